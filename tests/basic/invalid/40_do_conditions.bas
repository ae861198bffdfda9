n = 0
DO WHILE n < 3
  n = n + 1
LOOP UNTIL n = 3
DO UNTIL
LOOP
