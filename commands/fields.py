"""Field types shared by command structs; their constraints are also the OpenAPI schema.

Patterns avoid `\\s` shorthands, whose meaning differs between Python and the JSON Schema
(ECMA-262) engines that clients validate with: control characters are spelled out instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

_ADDRESS_PART = (
    r"[^@ \t\n\r\f\v\x00-\x1f\x7f-\xa0"
    r"\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+"
)

Email = Annotated[
    str,
    Meta(
        max_length=254,
        pattern=f"^{_ADDRESS_PART}@{_ADDRESS_PART}\\.{_ADDRESS_PART}$",
        description="An email address",
        examples=["ana@example.com"],
    ),
]
# Every character str.isspace() (and so str.strip()) takes for white space, Unicode's
# included: a title must hold at least one other character.
_SPACES = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
Title = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=500,
        pattern=f"[^{_SPACES}]",
        description="A title of 1 to 500 characters, not all white space (leading and trailing"
        " space is dropped)",
    ),
]
WHEN_PATTERN = (
    r"^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Read as a noun phrase by commands.validation: "expected an RFC 3339 date-time such as ...".
WHEN_DESCRIPTION = "An RFC 3339 date-time such as 2024-01-15T17:00:00Z"
# A string, not a datetime: lenient decoding would take the number 0 for 1970-01-01.
When = Annotated[str, Meta(pattern=WHEN_PATTERN, description=WHEN_DESCRIPTION)]


class InvalidField(ValueError):
    """A field's value has the right shape but no meaning (e.g. February 30)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_when(value: str, field: str) -> datetime:
    """An RFC 3339 date-time string (with its zone) as an aware datetime."""
    shown = value if len(value) <= 60 else value[:60] + "…"
    try:
        when = datetime.fromisoformat(value.upper())
    except ValueError:
        raise InvalidField(
            field,
            f"`{field}`: expected {WHEN_DESCRIPTION[:1].lower()}{WHEN_DESCRIPTION[1:]},"
            f" got '{shown}'",
        ) from None
    if when.tzinfo is None:
        raise InvalidField(
            field, f"`{field}`: expected a date-time with a time zone (Z or +01:00), got '{shown}'"
        )
    return when
