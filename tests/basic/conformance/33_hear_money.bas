FOR EACH what IN ["rent", "food", "fun", "gift"]
  HEAR amount AS MONEY WITH "How much for " + what + "?"
  TALK what + ": " + amount + " (x2 = " + amount * 2 + ")"
NEXT
