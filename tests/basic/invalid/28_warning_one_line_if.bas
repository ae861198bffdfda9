x = 1
IF x = 1 THEN TALK "a" : TALK "b"
IF x = 2 THEN TALK "c" ELSE TALK "d" : TALK "e"
IF x = 3 THEN TALK "fine" ELSE TALK "fine too"
