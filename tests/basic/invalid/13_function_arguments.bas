a = LEFT("abc")
b = MID("a")
c = NOW(1)
d = UCAS("x")
e = IIF(TRUE, 1)
TALK a + b + c + d + e
