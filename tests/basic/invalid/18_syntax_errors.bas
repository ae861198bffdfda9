x = 1
IF x = 1
  TALK "no then"
END IF
FOR i = 1 5
NEXT
y =
z = 1 +* 2
TALK (1 + 2
TALK "ok"
