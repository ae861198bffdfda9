SUB greet(name)
  TALK "hi " + name
END SUB
CALL greet("a")
CALL gret("b")
CALL missing
