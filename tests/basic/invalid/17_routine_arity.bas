SUB greet(a)
  TALK a
END SUB
FUNCTION add(a, b)
  RETURN a + b
END FUNCTION
greet "x", "y"
CALL greet()
x = add(1)
TALK x
