CALL "known.bas"
CALL "Known"
CALL "other.bas"
