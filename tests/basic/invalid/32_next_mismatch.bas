FOR i = 1 TO 2
  FOR j = 1 TO 2
    TALK i + j
  NEXT i
NEXT j
