HEAR weight AS FLOAT
TALK "weight " + weight
HEAR height AS FLOAT
TALK "height " + height * 2
