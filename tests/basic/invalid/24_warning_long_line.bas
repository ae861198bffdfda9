TALK "short"
TALK "This line is deliberately much longer than one hundred and twenty characters so that the validator warns about it."
