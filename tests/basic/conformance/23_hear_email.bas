TALK "Your email?"
HEAR email AS EMAIL
TALK "Saved " + email
HEAR other AS EMAIL
TALK "other=[" + other + "]"
