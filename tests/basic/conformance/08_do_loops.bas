n = 0
DO WHILE n < 3
  n = n + 1
LOOP
TALK "while: " + n
DO UNTIL n = 0
  n = n - 1
LOOP
TALK "until: " + n
DO
  n = n + 10
LOOP WHILE n < 25
TALK "post while: " + n
DO
  n = n - 1
LOOP UNTIL n MOD 7 = 0
TALK "post until: " + n
DO
  n = n + 1
  IF n > 30 THEN EXIT DO
LOOP
TALK "exit do: " + n
