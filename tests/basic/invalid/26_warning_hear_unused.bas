HEAR name
HEAR age AS INTEGER
TALK "age " + age
x = HEAR
HEAR person.name
