TALK "start
IF x THEN
  TLAK "typo"
  FOR i = 1 TO
  NEXT
WEND
x = LEFT("a")
CALL nothing
GOTO away
