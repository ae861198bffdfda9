"""What every area's aggregates share: the errors a command can end in.

How an event evolves (upcasting; the example is domain.paper's PaperCreated). Stored events
are never rewritten: an old shape is upgraded each time it is read, by the event-store
library (eventsourcing's Mapper.to_domain_event), on every path (aggregate loads, history,
projections, rebuilds, the Kafka feed, which carries the stored state as it is).

1. Declare the event as a class of its own on the aggregate, with its fields and its TOPIC,
   which never changes (`class XCreated(Aggregate.Created)`, or `Aggregate.Event` for
   later events), and decorate the method with `@event(XCreated)` instead of
   `@event("XCreated", topic=...)`; the class name stays the event's name.
2. Set `class_version = N + 1` on it (N is 1 for a class that has none) and add the new
   field. New events are stored with "class_version": N + 1 (version 1 is stored without).
3. Beside it, add `@staticmethod def upcast_vN_vN+1(state: dict) -> None` that turns the
   stored state of version N into version N + 1 in place (say, fill the new field from the
   old ones). Reading a version-K event runs every upcaster from K up, in turn: never edit
   or remove an old one, add the next.
4. Test it by writing the old shape straight into the event store (tests/test_upcasting.py).

Aggregate attributes need nothing of this: snapshots taken by other code are ignored
(infra.eventstore.code_stamp) and the aggregate is replayed from its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


class DomainError(Exception):
    """A command that the aggregate's rules refuse."""


class Gone(DomainError):
    """The aggregate was deleted; it takes no more commands."""


class Forbidden(DomainError):
    """The actor may not act on this aggregate."""


class Conflict(DomainError):
    """The resource's current state refuses this request (a closed session, a rebuild
    already running): retrying unchanged will not help, changing the state may (409)."""


class VersionMismatch(DomainError):
    """The client's expected version is not the aggregate's current version."""

    def __init__(self, expected: IfMatch, actual: int) -> None:
        super().__init__(f"{expected.describe()}, current version is {actual}")
        self.expected = sorted(expected.versions)
        self.actual = actual


@dataclass(frozen=True)
class IfMatch:
    """The versions a write's `If-Match` accepts, compared strongly (RFC 9110): the strong
    tags it lists that are versions of ours. Empty when it lists none (only weak tags, or
    tags of no version), so that no version matches."""

    versions: frozenset[int]

    @classmethod
    def version(cls, number: int) -> IfMatch:
        return cls(frozenset((number,)))

    def check(self, current: int) -> None:
        """VersionMismatch unless the aggregate's current version is one of these."""
        if current not in self.versions:
            raise VersionMismatch(self, current)

    def describe(self) -> str:
        if not self.versions:
            return "If-Match names no version (weak tags never match)"
        return "expected version " + " or ".join(str(v) for v in sorted(self.versions))


def check_version(expected: IfMatch | None, current: int) -> None:
    """Checks a write's precondition; None (no If-Match, or `*`) accepts any version."""
    if expected is not None:
        expected.check(current)


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
