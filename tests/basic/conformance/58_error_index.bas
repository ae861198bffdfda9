x = [1, 2]
TALK x[1]
TALK x[5]
