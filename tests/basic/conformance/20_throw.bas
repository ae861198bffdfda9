SUB check(age)
  IF age < 0 THEN THROW "age cannot be negative"
  TALK "age ok: " + age
END SUB
ON ERROR RESUME NEXT
check(5)
check(-1)
TALK "recovered"
ON ERROR GOTO 0
check(-2)
TALK "never"
