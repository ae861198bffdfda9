start:
TALK "hi"
GOTO nowhere
GOTO start
