"""What command handlers need from the outside world, as small protocols."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class Saved:
    """Where a save landed in the notification log: (notification id, topic, aggregate id)."""

    notifications: tuple[tuple[int, str, str], ...]


class NotFound(Exception):
    """No aggregate with that id (or not at that version)."""


class ConcurrencyConflict(Exception):
    """Another writer saved this aggregate (or claimed this id) first."""


class StoreUnavailable(Exception):
    """The event store cannot be reached; the request may be retried."""


class EventStore(Protocol):
    def save(self, *aggregates: Any) -> Saved: ...

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any: ...

    def history(self, aggregate_id: UUID) -> Sequence[Any]: ...
