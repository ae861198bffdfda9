x = 1
IF x THEN
  TALK "a"
ELSE
  TALK "b"
ELSE
  TALK "c"
END IF
