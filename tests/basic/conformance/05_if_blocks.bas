FOR EACH n IN [1, 2, 3, 4]
  IF n = 1 THEN
    TALK "one"
  ELSE IF n = 2 THEN
    TALK "two"
  ELSEIF n = 3 THEN
    TALK "three"
  ELSE
    TALK "many"
  END IF
NEXT
If 1 < 2 Then
  if 2 < 3 then
    TALK "nested"
  endif
End If
IF FALSE THEN TALK "no" ELSE TALK "one-line else"
IF TRUE THEN TALK "one-line then"
x = 5
IF x > 3 THEN
  IF x > 4 THEN
    TALK "x > 4"
  ELSE
    TALK "x = 4"
  END IF
END IF
