GOTO inside
FOR i = 1 TO 3
inside:
  TALK i
NEXT
