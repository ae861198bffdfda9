label = "text"
ON ERROR RESUME NEXT
label.size = 3
TALK "field on text skipped"
ON ERROR GOTO 0
WITH label
  size = 3
END WITH
