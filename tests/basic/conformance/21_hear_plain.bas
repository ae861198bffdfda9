TALK "Say something"
HEAR anything
TALK "You said: " + anything
reply = HEAR
TALK "Then: [" + reply + "]"
HEAR color WITH "Favourite colour?" DEFAULT "blue"
TALK "Colour: " + color
HEAR size WITH "Size?" DEFAULT "M"
TALK "Size: " + size
