FOR i = 1 TO 3
  TALK "i=" + i
NEXT i
FOR i = 10 TO 1 STEP -4
  TALK i
NEXT
FOR i = 0 TO 1 STEP 0.5
  TALK i
END FOR
FOR i = 5 TO 1
  TALK "never"
NEXT
FOR i = 1 TO 10
  IF i = 3 THEN EXIT FOR
  TALK "before exit " + i
NEXT
TALK "after loop i=" + i
FOR a = 1 TO 2
  FOR b = 1 TO 2
    TALK a + "," + b
  NEXT b
NEXT a
