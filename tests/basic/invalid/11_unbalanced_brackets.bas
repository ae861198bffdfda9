x = (1 + 2
TALK x
y = 1 + 2)
TALK y
z = [1, 2
