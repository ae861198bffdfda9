PARAM name AS STRING LIKE "Ana" DESCRIPTION "The customer's name"
DESCRIPTION "Saves a lead"
TALK "tools are declared"
