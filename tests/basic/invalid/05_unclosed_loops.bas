n = 0
WHILE n < 3
  n = n + 1
  DO
    n = n - 1
