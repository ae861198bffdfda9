HEAR age AS INTEGER WITH "How old are you?"
TALK "Next year you will be " + (age + 1)
HEAR qty AS NUMBER
TALK "qty*2=" + qty * 2
