ON ERROR RESUME NEXT
x = [1] + 2
TALK "skipped the list sum"
ON ERROR GOTO 0
y = "abc" * 2
