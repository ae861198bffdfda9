TALK "creating"
CREATE TASK "Follow up", "bo@example.com", "2025-03-20", "high"
TALK "never"
