SELECT CASE 1
  TALK "before any case"
  CASE 1
    TALK "one"
  CASE ELSE
    TALK "else"
  CASE ELSE
    TALK "again"
END SELECT
