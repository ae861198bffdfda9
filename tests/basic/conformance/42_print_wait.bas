PRINT "starting"
TALK "Please wait"
WAIT 2
WAIT 0.5
PRINT "done after " + 2.5 + "s"
TALK "Thanks"
