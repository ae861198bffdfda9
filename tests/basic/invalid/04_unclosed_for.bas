FOR i = 1 TO 3
  TALK i
FOR EACH w IN ["a"]
  TALK w
