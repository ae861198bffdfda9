x = 1
5 = x
x.y. = 3
LEFT("a", 1) = 2
SET = 4
LET
