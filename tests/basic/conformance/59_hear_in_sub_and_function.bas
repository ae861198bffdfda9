SUB askColor
  HEAR c WITH "Colour?"
  favourite = c
END SUB
FUNCTION askNumber(prompt)
  HEAR n AS INTEGER WITH prompt
  RETURN n * 2
END FUNCTION
favourite = "none"
CALL askColor
TALK "favourite " + favourite
doubled = askNumber("Number?")
TALK "doubled " + doubled
