"""What command handlers need from the outside world, as small protocols."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


# The largest event the store takes, encoded (the library's JSON of the event's state).
# Kafka's producer, topic and consumer are configured above it (infra.kafka); content
# larger than this travels by reference to the blob store, never inside an event.
MAX_EVENT_BYTES = 512 * 1024


class EventTooLarge(Exception):
    """A command would save an event larger than MAX_EVENT_BYTES (answered 413)."""

    def __init__(self, topic: str, size: int) -> None:
        super().__init__(
            f"the change is too large to record ({size:,} bytes encoded, at most"
            f" {MAX_EVENT_BYTES:,}); send less content in one request"
        )
        self.topic = topic
        self.size = size


class UnstorableText(ValueError):
    """A command would save text no store can hold: U+0000 or a lone surrogate (answered 400).

    `path` locates the text in the event's state: "metadata.note", "value[2].name".
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the text at {path} holds U+0000 or a lone surrogate (U+D800-U+DFFF),"
            " which cannot be stored"
        )
        self.path = path


class StoreUnavailable(Exception):
    """The event store cannot be reached; the request may be retried."""


class StoreUnreachable(StoreUnavailable):
    """The database itself is out of reach (connection lost, server down): an outage, as
    opposed to a statement that failed (a missing table, a lock held too long)."""


class EventStore(Protocol):
    def save(self, *aggregates: Any) -> Saved: ...

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any: ...

    def history(self, aggregate_id: UUID) -> Sequence[Any]: ...


# --- content: the blob store ---------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Stored content, addressed by its SHA-256 (hex): identical content is stored once."""

    sha256: str
    size: int


class BlobTooLarge(Exception):
    """The content grew past the writer's limit (answered 413); nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the content is larger than {limit:,} bytes")
        self.limit = limit


class BlobMissing(Exception):
    """No blob with that digest (never stored, or collected)."""


class BlobWriter(Protocol):
    """One upload in progress: chunks in, then `commit` (stored under its digest) or `abort`
    (nothing kept). Writers hold at most a part in memory, whatever the content's size."""

    def write(self, chunk: bytes) -> None:
        """Raises BlobTooLarge (and aborts) past the writer's limit."""
        ...

    def commit(self) -> Blob: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Content-addressed storage for drive files and mail attachments. Blobs are never part
    of the event log: events name them by digest, and `gbserver drive gc` removes the ones
    no read model names."""

    def writer(self, limit: int | None = None) -> BlobWriter: ...

    def put(self, data: bytes) -> Blob:
        """Small content in one call (dialog WRITE, mail parts)."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The content's bytes from `start` to `end` inclusive (None: to the end), in chunks;
        raises BlobMissing."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None:
        """Removes the blob (a missing one is no error)."""
        ...

    def stored(self) -> Iterator[tuple[str, float]]:
        """Every blob as (sha256, seconds since the epoch it was stored); for the collector."""
        ...

    def clean_partial(self, older_than: float) -> int:
        """Removes uploads abandoned (by a crash) more than `older_than` seconds ago."""
        ...
