TALK "looping forever"
WHILE TRUE
WEND
