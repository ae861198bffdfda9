SET BOT MEMORY "greeting", "Hi there"
TALK GET BOT MEMORY "greeting"
TALK GET BOT MEMORY("visits") + 1
SET USER MEMORY "lang", "pt"
lang = GET USER MEMORY "lang"
TALK "lang " + lang
REMEMBER "color", "green"
TALK "color " + RECALL "color"
TALK RECALL "unknown" IS NULL
