name = "Ana"
TALK "Hello " + name
TALK "Hello " + nmae
