SUB s
  RETURN
  TALK "after return"
END SUB
FOR i = 1 TO 3
  EXIT FOR
  TALK "after exit for"
NEXT
IF TRUE THEN
  THROW "x"
  TALK "after throw"
END IF
s
EXIT
TALK "after exit"
again:
TALK "reachable by label"
GOTO again
