n = 0
again:
n = n + 1
IF n < 3 THEN GOTO again
TALK n
