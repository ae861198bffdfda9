x = 1
LET y = 2
SET z = x + y
TALK z
SET person.name = "Bea"
person.age = 30
TALK person.name + " is " + person.age
items = [10, 20, 30]
items[1] = 25
items[3] = 40
TALK items
Counter = 5
TALK counter + COUNTER
empty = NULL
IF empty IS NULL THEN TALK "empty is NULL"
IF NOT empty THEN TALK "NULL is false"
IF NOT "" THEN TALK "empty text is false"
IF NOT 0 THEN TALK "zero is false"
IF NOT [] THEN TALK "empty list is false"
IF "x" AND 1 AND [1] THEN TALK "the rest is true"
copy = items
copy[0] = 99
TALK items[0] + " " + copy[0]
