email = GET "session.user_email"
TALK "session works: " + email
data = GET "https://api.example.com/data"
