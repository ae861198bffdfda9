ADD SUGGESTION "1" AS "Under $1M"
ADD SUGGESTION "2" AS "Over $1M"
ADD SUGGESTION "Help"
HEAR revenue
TALK "revenue " + revenue
ADD SUGGESTION "again"
CLEAR SUGGESTIONS
ADD SUGGESTION "yes"
HEAR confirm
TALK "confirm " + confirm
