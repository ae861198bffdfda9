TALK greeting
greeting = "hi"
TALK greeting
DO
  IF done THEN EXIT DO
  done = TRUE
LOOP
count = count + 1
SUB show
  TALK greeting + local_only
  local_only = 1
END SUB
TALK NOW
TALK local_only
