SEND MAIL "boss@example.com", "New visitor", "Someone arrived"
SET BOT MEMORY "visits", 1
HEAR answer WITH "Shall we start?"
TALK "You said " + answer
HEAR more WITH "Anything else?"
TALK "Bye"
