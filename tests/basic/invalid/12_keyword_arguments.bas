TALK "a", "b"
SEND MAIL "a@b.c", "subject"
CREATE TASK "x"
BOOK "t", "d", "2025-01-01", 30
WAIT
SET BOT MEMORY "k"
REMEMBER "k", 1, 2
x = LLM "a", "b"
