HEAR a AS TEXT WITH "Tell me about you"
TALK "text: " + a
HEAR b AS STRING
TALK "string: " + b
