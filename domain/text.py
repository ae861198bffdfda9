"""Text every store can hold, whichever area or dialog produced it.

PostgreSQL's TEXT cannot hold U+0000, and no UTF-8 encoder takes a lone surrogate
(U+D800-U+DFFF): an event carrying either would be saved (or fail to save) and then stall
the read models behind it. Request bodies with them are refused at the door; text made at
run time (a dialog's replies, memory values, task titles) is normalised with `clean`.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` with U+0000 and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clean_value(value: Any) -> Any:
    """A JSON-like value (str, list, dict with str keys, scalars) with every string cleaned."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): clean_value(v) for k, v in value.items()}
    return value


def storable(text: str) -> bool:
    """True when `text` holds neither U+0000 nor a lone surrogate."""
    return _UNSTORABLE.search(text) is None
