HEAR site AS URL
TALK "site " + site
HEAR other AS URL
TALK "other " + other
