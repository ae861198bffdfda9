TLAK "hi"
TALK "fine"
PRNT "log"
FROBNICATE 3
