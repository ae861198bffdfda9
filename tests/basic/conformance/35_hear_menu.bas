TALK "What would you like?"
HEAR choice AS "Coffee", "Tea", "Juice"
TALK "You chose " + choice
HEAR second AS "Yes", "No"
TALK "second=" + second
HEAR third AS "A", "B"
TALK "third=[" + third + "]"
