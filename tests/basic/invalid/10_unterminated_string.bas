TALK "fine"
TALK 'oops
TALK "never closed
