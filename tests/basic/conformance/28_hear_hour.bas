FOR EACH label IN ["start", "end", "lunch"]
  HEAR h AS HOUR WITH label + "?"
  TALK label + " at " + h
NEXT
