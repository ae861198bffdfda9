name = "a"
TALK LENN(name)
TALK Foo(1)
name.trim()
