FUNCTION ratio(a, b)
  RETURN a / b
END FUNCTION
ON ERROR RESUME NEXT
TALK "half: " + ratio(1, 2)
TALK "bad: " + ratio(1, 0)
TALK "went on"
ON ERROR GOTO 0
r = ratio(3, 0)
