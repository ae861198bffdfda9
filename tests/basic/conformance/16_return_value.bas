TALK "computing"
code = "TKT-" + FORMAT(7, "000")
IF code <> "" THEN
  RETURN code
END IF
TALK "never said"
