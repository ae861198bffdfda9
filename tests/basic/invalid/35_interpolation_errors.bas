TALK "empty ${}"
TALK "bad ${1 +}"
TALK "open ${x"
x = 1
