a = { "name": "Caio", "tags": ["x", "y"] }
b = #{ city: "Recife", zip: 50000 }
TALK a.name + " " + a.tags[1] + " " + b.city
TALK a["name"]
c = NEW OBJECT
c.kind = "new"
TALK c
d = NEW ARRAY
d.PUSH(1)
d.push("two")
d.Push([3])
TALK d
TALK d.length + " " + d.COUNT()
TALK "  padded  ".trim() + "|"
TALK "Hello World".contains("world")
TALK d.contains("two")
TALK a.tags.join("+")
TALK a.missing IS NULL
TALK a.NAME
nested = { "inner": { "list": [ { "v": 7 } ] } }
TALK nested.inner.list[0].v
nested.inner.list[0].v = 8
TALK nested.inner.list[0].v
last = d.pop()
TALK last
TALK d
