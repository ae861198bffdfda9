step_size = 0
FOR i = 1 TO 3 STEP step_size
  TALK i
NEXT
