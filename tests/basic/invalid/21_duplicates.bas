SUB s
END SUB
SUB S
END SUB
top:
top:
GOTO top
