TALK "about to divide"
x = 10 / (5 - 5)
TALK "never"
