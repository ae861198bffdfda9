FOR EACH color IN ["red", "blue", "pink"]
  SWITCH color
    CASE "red"
      TALK "warm"
    CASE "blue", "green"
      TALK "cold"
    DEFAULT
      TALK "unknown " + color
  END SWITCH
NEXT
