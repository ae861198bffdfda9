TALK IIF(1 > 2, "yes", "no")
TALK IIF(TRUE, "safe", 1 / 0)
TALK ISEMPTY("") + " " + ISEMPTY(NULL) + " " + ISEMPTY("x") + " " + ISEMPTY([])
TALK NVL(NULL, "default") + " " + NVL("v", "default")
TALK COALESCE(NULL, NULL, "third")
TALK UUID()
TALK GUID
o = JSON('{"a": [1, 2.5, true, null], "b": {"c": "d"}}')
TALK o.a[1] + " " + o.b.c
TALK TOJSON(o)
TALK TOJSON("x") + TOJSON(NULL)
bad = JSON("{oops")
