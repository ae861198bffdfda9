x = 1
IF x = 1 THEN
  TALK "one"
ELSE
  TALK "other"
TALK "no END IF"
