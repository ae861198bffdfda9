ON ERROR RESUME NEXT
x = 1 / 0
TALK "still here"
TALK missing_variable
TALK "after unknown variable"
SEND MAIL "ops@example.com", "Alert", "Body"
TALK "after failed mail"
FOR i = 1 TO 3
  y = 10 / (i - 2)
  TALK "i=" + i + " y=" + y
NEXT
ON ERROR GOTO 0
TALK "handler off"
z = 1 / 0
TALK "never"
