HEAR id AS UUID WITH "Order id?"
TALK "order " + id
