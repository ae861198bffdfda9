"""The dialect's vocabulary in one place: statements, their argument counts, HEAR types.

The parser, the validator's "did you mean" and the machine all read these tables, so a
keyword is added once.
"""

from __future__ import annotations

import difflib

# Statement keywords with (minimum, maximum) argument counts.
ARITY: dict[str, tuple[int, int]] = {
    "TALK": (1, 1),
    "PRINT": (1, 1),
    "WAIT": (1, 1),
    "THROW": (1, 1),
    "ADD SUGGESTION": (1, 1),
    "SET BOT MEMORY": (2, 2),
    "SET USER MEMORY": (2, 2),
    "REMEMBER": (2, 2),
    "USE KB": (1, 1),
    "CLEAR KB": (0, 0),
    "SET CONTEXT": (1, 2),
    "SEND MAIL": (3, 3),
    "CREATE TASK": (3, 4),
    "BOOK": (5, 5),
    "START MEET": (1, 1),
    "WRITE": (2, 2),
    "DELETE FILE": (1, 1),
    "SEND FILE": (1, 2),
    # keywords that yield a value
    "GET": (1, 1),
    "GET SESSION": (1, 1),
    "GET BOT MEMORY": (1, 1),
    "GET USER MEMORY": (1, 1),
    "RECALL": (1, 1),
    "THINK KB": (1, 1),
    "LLM": (1, 1),
    "READ": (1, 1),
    "LIST": (1, 1),
}

# Every statement a line may start with, for "unknown statement X; did you mean Y?".
STATEMENTS: tuple[str, ...] = (
    "TALK", "HEAR", "PRINT", "WAIT", "ADD SUGGESTION", "CLEAR SUGGESTIONS", "LET", "SET",
    "IF", "ELSE", "END IF", "FOR", "FOR EACH", "NEXT", "DO", "LOOP", "WHILE", "WEND", "EXIT",
    "BREAK", "SELECT CASE", "SWITCH", "SUB", "FUNCTION", "CALL", "WITH", "RETURN", "THROW",
    "ON ERROR RESUME NEXT", "GOTO", "SET BOT MEMORY", "SET USER MEMORY", "REMEMBER",
    "USE KB", "CLEAR KB", "SET CONTEXT", "SEND MAIL", "SEND EMAIL", "CREATE TASK", "BOOK",
    "START MEET", "WRITE", "DELETE FILE", "SEND FILE", "PARAM", "DESCRIPTION", "SAVE",
    "UPDATE", "DELETE", "TABLE", "SET SCHEDULE", "ADD TOOL", "CLEAR TOOLS", "SET HEADER",
    "CLEAR HEADERS", "BEGIN TALK", "BEGIN SYSTEM PROMPT", "POST", "PUT", "PATCH",
)  # fmt: skip

# HEAR ... AS <type>: the canonical type for each accepted name.
HEAR_TYPES: dict[str, str] = {
    "TEXT": "TEXT",
    "STRING": "TEXT",
    "EMAIL": "EMAIL",
    "INTEGER": "INTEGER",
    "NUMBER": "INTEGER",
    "FLOAT": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "HOUR": "HOUR",
    "NAME": "NAME",
    "MOBILE": "MOBILE",
    "PHONE": "MOBILE",
    "URL": "URL",
    "UUID": "UUID",
    "MONEY": "MONEY",
    "ZIPCODE": "ZIPCODE",
}


OPENER_OF: dict[str, str] = {
    "END IF": "IF",
    "ELSE": "IF",
    "ELSE IF": "IF",
    "NEXT": "FOR",
    "END FOR": "FOR",
    "WEND": "WHILE",
    "END WHILE": "WHILE",
    "LOOP": "DO",
    "CASE": "SELECT CASE",
    "DEFAULT": "SWITCH",
    "END SELECT": "SELECT CASE",
    "END SWITCH": "SWITCH",
    "END SUB": "SUB",
    "END FUNCTION": "FUNCTION",
    "END WITH": "WITH",
    "END TALK": "BEGIN TALK",
    "END SYSTEM PROMPT": "BEGIN SYSTEM PROMPT",
    "END TABLE": "TABLE",
}

# Words that never name a variable.
RESERVED = frozenset(
    [
        "AND",
        "OR",
        "NOT",
        "MOD",
        "THEN",
        "ELSE",
        "ELSEIF",
        "ENDIF",
        "TO",
        "STEP",
        "IS",
        "AS",
        "IN",
        "END",
        "IF",
        "NEXT",
        "WEND",
        "LOOP",
        "WHILE",
        "UNTIL",
        "CASE",
        "EACH",
        "TRUE",
        "FALSE",
        "NULL",
    ]
)


def arity_message(keyword: str, got: int) -> str | None:
    """The 'wrong number of arguments' message for a keyword, or None when the count fits."""
    low, high = ARITY[keyword]
    if low <= got <= high:
        return None
    if low == high:
        expected = f"{low} argument" + ("" if low == 1 else "s")
    else:
        expected = f"{low} to {high} arguments"
    return f"{keyword} expects {expected}, got {got}"


def suggest(words: str, extra: tuple[str, ...] = ()) -> str:
    """'unknown statement X; did you mean Y?' (the suggestion only when one is close)."""
    upper = words.upper()
    first = upper.split()[0]
    if " " in upper:
        candidates = [s for s in STATEMENTS if s.split()[0] == first and " " in s]
    else:
        candidates = sorted({s.split()[0] for s in STATEMENTS} | {e.upper() for e in extra})
    match = difflib.get_close_matches(upper, candidates, n=1, cutoff=0.6)
    message = f"unknown statement {words}"
    if match:
        shown = match[0]
        for name in extra:
            if name.upper() == shown:
                shown = name
        message += f"; did you mean {shown}?"
    return message
