c = "a"
SELECT CASE c
  CASE "a"
    TALK "a"
SWITCH c
  CASE "b"
    TALK "b"
