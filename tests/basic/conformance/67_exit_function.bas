FUNCTION clamp(x)
  clamp = x
  IF x > 10 THEN
    clamp = 10
    EXIT FUNCTION
  END IF
  TALK "kept " + x
END FUNCTION
a = clamp(5)
b = clamp(50)
TALK a + b
TALK clamp(7) * 2
