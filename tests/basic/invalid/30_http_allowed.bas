data = GET "https://api.example.com/x"
me = GET "session.user_email"
r = POST "https://api.example.com/y", data
SET HEADER "Authorization", "Bearer x"
DELETE HTTP "https://api.example.com/z"
TALK r + me
