SELECT CASE "go"
  CASE "go"
    FOR i = 1 TO 2
      j = 0
      WHILE j < 2
        IF i = j + 1 THEN
          WITH answer
            HEAR reply WITH "i=" + i + " j=" + j + "?"
            text = reply
          END WITH
          FOR EACH w IN SPLIT(answer.text, " ")
            TALK "word " + w
          NEXT
        END IF
        j = j + 1
      WEND
    NEXT
END SELECT
TALK "end i=" + i + " j=" + j
