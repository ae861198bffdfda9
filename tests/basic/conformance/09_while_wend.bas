i = 0
WHILE i < 3
  TALK "wend " + i
  i = i + 1
WEND
WHILE TRUE
  i = i - 1
  IF i = 1 THEN BREAK
END WHILE
TALK "i=" + i
WHILE i < 100
  i = i * 3
  IF i > 20 THEN EXIT WHILE
WEND
TALK "i=" + i
