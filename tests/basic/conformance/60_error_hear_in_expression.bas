FUNCTION ask()
  HEAR v
  RETURN v
END FUNCTION
TALK "value: " + ask()
