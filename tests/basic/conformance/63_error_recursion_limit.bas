FUNCTION forever(n)
  RETURN forever(n + 1)
END FUNCTION
TALK forever(1)
