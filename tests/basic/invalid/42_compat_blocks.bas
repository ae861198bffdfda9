TABLE customers
  name string(100)
  email string(100) key
END TABLE
BEGIN SYSTEM PROMPT
  You are "helpful.
END SYSTEM PROMPT
TABLE orders
  id int key
BEGIN TALK
  Hello ${name}, don't forget "quotes
