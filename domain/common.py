"""What every area's aggregates share: the errors a command can end in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


class DomainError(Exception):
    """A command that the aggregate's rules refuse."""


class Gone(DomainError):
    """The aggregate was deleted; it takes no more commands."""


class Forbidden(DomainError):
    """The actor may not act on this aggregate."""


class VersionMismatch(DomainError):
    """The client's expected version is not the aggregate's current version."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"expected version {expected}, current version is {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Actor:
    """Who asks: an email and whether they are an admin."""

    email: str
    is_admin: bool = False


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with 'Z' and microseconds: fixed width, so text order is time order."""
    if value.tzinfo is None:
        raise ValueError("a timestamp must carry its time zone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
