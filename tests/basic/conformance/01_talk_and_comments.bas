' A comment line with a quote
REM another comment
# a hash comment
// a slash comment
TALK "Hello, world!"   ' a trailing comment
talk 'single quotes work too'
Talk "Olá, ação! 🎉 UTF-8 everywhere"
TALK "Line one\nLine two\tTabbed \"quoted\" back\\slash"
name = "Ana"
TALK "Hi ${name}, 2 + 3 = ${2 + 3}"
TALK "He said ""hi"""
TALK "A string
that spans lines"
TALK 42
TALK 3.5
TALK 10 / 4
TALK TRUE
TALK NULL
