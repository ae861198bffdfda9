people = [#{ name: "Ana", age: 30 }, #{ name: "Bo", age: 17 }, #{ name: "Cy", age: 45 }]
FOR EACH p IN people
  IF p.age < 18 THEN
    TALK p.name + " is a minor"
  ELSE
    TALK p.name + " is an adult"
  END IF
NEXT p
FOR EACH w IN SPLIT("red,green,blue", ",")
  IF w = "blue" THEN BREAK
  TALK w
END FOR
FOR EACH nothing IN []
  TALK "never"
NEXT
FOR EACH item IN NULL
  TALK "never"
NEXT
list = [1, 2, 3]
FOR EACH v IN list
  list.PUSH(v * 10)
NEXT
TALK list
