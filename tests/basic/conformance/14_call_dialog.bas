TALK "main starts"
who = "main"
CALL "ask_name.bas"
TALK "back in " + who
next_dialog = "nowhere"
CALL (next_dialog + ".bas")
TALK "main ends"
