tries = 0
ask:
tries = tries + 1
HEAR code WITH "Type the secret"
IF code <> "open" THEN
  IF tries < 3 THEN GOTO ask
  TALK "Too many tries"
  GOTO finish
END IF
TALK "Welcome in after " + tries
finish:
TALK "bye"
