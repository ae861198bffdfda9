HEAR cell AS MOBILE
TALK "mobile " + cell
HEAR phone AS PHONE
TALK "phone " + phone
