WRITE "notes/a.txt", "first note"
WRITE "notes/b.txt", "second"
files = LIST "notes"
TALK files
TALK READ "notes/a.txt"
DELETE FILE "notes/a.txt"
TALK COUNT(LIST "notes")
SEND FILE "notes/b.txt", "Here it is"
SEND FILE "notes/b.txt"
x = READ "notes/a.txt"
