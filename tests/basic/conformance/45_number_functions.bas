TALK VAL("42abc") + 1
TALK VAL("3.5") + VAL("abc")
TALK INT(3.7) + " " + INT(-3.2)
TALK ROUND(2.5) + " " + ROUND(3.14159, 2) + " " + ROUND(-2.5)
TALK ABS(-7) + ABS(2.5)
TALK SUM(1, 2, 3) + " " + SUM([4, 5])
TALK AVG([1, 2, 3, 4]) + " " + AVG(2, 4)
TALK MIN(3, 1, 2) + MAX([3, 9, 2])
TALK MIN("b", "a")
TALK RANDOM(1, 100)
TALK RANDOM(1, 6) + " " + RANDOM(1, 6)
x = RND()
TALK x < 1 AND x >= 0
TALK RND < 1
TALK 2 ^ 0.5 > 1.41
