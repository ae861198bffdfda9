FUNCTION fact(n)
  IF n <= 1 THEN RETURN 1
  RETURN n * fact(n - 1)
END FUNCTION
FUNCTION fib(n)
  IF n < 2 THEN
    RETURN n
  END IF
  a = fib(n - 1)
  b = fib(n - 2)
  RETURN a + b
END FUNCTION
FUNCTION square(x)
  square = x * x
END FUNCTION
FUNCTION answer()
  RETURN 42
END FUNCTION
TALK fact(10)
TALK fib(15)
TALK square(9) + 1
TALK answer + answer()
r = fact(5)
TALK "r=" + r
