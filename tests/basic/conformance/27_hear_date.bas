DO
  HEAR d AS DATE WITH "When?"
  TALK "date " + d
LOOP UNTIL d = ""
