items = [
  "a",   ' a trailing comment inside a list
  "b"
]
TALK JOIN(items,
          "-")
SEND MAIL "ops@example.com",
  "Subject",
  "Body"
msg = "x" + _
  "y"
TALK msg
a = 1 : b = 2 : TALK a + b
obj = #{
  name: "n",
  list: [1,
         2]
}
TALK obj.list[1]
TALK "multi
line ${obj.name}"
IF a = 1 THEN TALK "one" : TALK "chained"
endif_flag = 5
TALK ENDIF_FLAG
