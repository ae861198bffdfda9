price = 10
WITH order
  id = "ORD-1"
  qty = 3
  .total = price * 3
  status = "new"
END WITH
TALK order
WITH order
  status = "paid"
  .note = "qty " + .qty
END WITH
TALK order.status + " / " + order.note
customer = #{ name: "Eli" }
WITH customer
  name = UPPER(.name)
END WITH
TALK customer.name
