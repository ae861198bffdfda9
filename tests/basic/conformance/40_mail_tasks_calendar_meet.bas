SEND MAIL "ana@example.com", "Welcome", "Hello Ana"
SEND EMAIL "bo@example.com", "Hi", "Body " + 2
CREATE TASK "Call Ana", "bo@example.com", "2025-03-20"
CREATE_TASK "Ship order", "ops@example.com", "2025-03-21", "high"
BOOK "Demo", "Product demo", "2025-03-20 14:00", 30, "Room 1"
room = START MEET "Daily Standup"
TALK "Join at " + room
START MEET "ad hoc"
