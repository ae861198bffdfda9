SUB one
  TALK "one"
FUNCTION two()
  RETURN 2
WITH obj
  x = 1
