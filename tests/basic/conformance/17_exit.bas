TALK "before"
FOR i = 1 TO 5
  IF i = 2 THEN EXIT
  TALK "loop " + i
NEXT
TALK "never"
