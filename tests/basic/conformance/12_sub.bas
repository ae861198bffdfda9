total = 0
SUB addItem(name, price)
  total = total + price
  TALK "added " + name
  IF price > 100 THEN
    TALK "expensive"
    EXIT SUB
  END IF
  TALK "cheap"
END SUB
SUB greet
  TALK "hello from greet"
  temp = "local"
END SUB
CALL addItem("pen", 3)
addItem "tv", 500
addItem("book", 20)
CALL greet
greet
TALK "total " + total
TALK ISEMPTY(temp)
