TALK "Pick a number"
HEAR n AS INTEGER
SELECT CASE n
  CASE 1, 2
    TALK "small"
  CASE 3 TO 9
    TALK "medium"
  CASE IS >= 100
    TALK "huge"
  CASE ELSE
    TALK "other"
END SELECT
SELECT CASE "b"
  CASE "a"
    TALK "a"
END SELECT
TALK "done"
