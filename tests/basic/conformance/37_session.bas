email = GET "session.user_email"
name = GET SESSION "user_name"
TALK name + " <" + email + ">"
SET "session.step", "intro"
SET "session.count" = 2
TALK GET("session.step") + " " + GET SESSION("session.count")
TALK GET SESSION "bot_id"
missing = GET "session.nothing"
TALK missing IS NULL
SET "step", 3
