"""What command handlers need from the outside world, as small protocols."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    import numpy
    from numpy.typing import NDArray

    Vectors = NDArray[numpy.float32]


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


# --- knowledge base: the passage index and the embedding model ------------------------------

# Sentence embeddings (Vectors): float32 rows of EMBEDDING_DIMENSION, L2-normalised, so that
# a dot product is the cosine similarity. numpy is imported by the adapters, not here.
EMBEDDING_DIMENSION = 384


@dataclass(frozen=True)
class KbChunk:
    """One passage of a knowledge-base document, as the index keeps it."""

    id: str  # f"{path}#{position}": stable while the document's content is
    bot: str
    collection: str
    path: str  # the source file's drive path (bots space): `{bot}.gbai/{bot}.gbkb/{collection}/…`
    title: str  # the document's title
    heading: str  # the headings above the passage, " > " joined ("" before the first heading)
    position: int  # the passage's order in its document, from 0
    content: str


@dataclass(frozen=True)
class KbHit:
    """A passage a retriever found: `score` is the backend's raw BM25 (lexical, > 0) or the
    cosine similarity of the embeddings (semantic, -1..1); higher is better."""

    chunk_id: str
    score: float


@dataclass(frozen=True)
class KbScope:
    """Which passages a search looks at: one bot's (or every bot's, None), and of those the
    named collections only (None: all of them)."""

    bot: str | None = None
    collections: frozenset[str] | None = None


class KbIndexUnavailable(Exception):
    """The index cannot be reached (OpenSearch down): answered 503, retried by the worker."""


class KbIndex(Protocol):
    """Where the knowledge base's passages are kept and searched: SQLite with in-memory
    postings and matrix (embedded, infra.kb_sqlite) or OpenSearch (scaled, infra.kb_opensearch).
    Documents are replaced whole, by path; everything here is idempotent."""

    def replace(self, path: str, chunks: Sequence[KbChunk], vectors: Vectors) -> None:
        """The document at `path` is now exactly these chunks (vectors: one row each); its
        earlier chunks are gone. `chunks` may be empty."""
        ...

    def delete(self, path: str) -> None:
        """Removes the document's chunks (an unknown path is no error)."""
        ...

    def paths(self) -> set[str]:
        """Every document path that has chunks (for the sweep after a rebuild)."""
        ...

    def lexical(self, query: str, scope: KbScope, k: int) -> list[KbHit]:
        """Up to `k` passages by BM25 over content, title and heading, best first. `query` is
        the user's raw text: the backend makes it safe for its query syntax (no operator of
        the user's reaches the engine); a query with no searchable term finds nothing."""
        ...

    def semantic(self, vector: Vectors, scope: KbScope, k: int) -> list[KbHit]:
        """Up to `k` passages by cosine similarity to `vector` (shape (EMBEDDING_DIMENSION,)),
        best first."""
        ...

    def similarity(self, vector: Vectors, ids: Sequence[str]) -> dict[str, float]:
        """The cosine similarity of `vector` to each of these passages, exactly (unknown ids
        are left out): the semantic part of a passage only the lexical retriever found."""
        ...

    def chunks(self, ids: Sequence[str]) -> dict[str, KbChunk]:
        """The passages of these ids (unknown ids are left out)."""
        ...

    def count(self) -> int:
        """The passages kept."""
        ...

    def check(self) -> None:
        """Raises KbIndexUnavailable when the index cannot be reached (health)."""
        ...

    def close(self) -> None: ...


class Embedder(Protocol):
    """A sentence-embedding model (infra.embeddings): loaded on first use, not before."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        """The texts' vectors, one row each, in order (shape (len(texts), EMBEDDING_DIMENSION))."""
        ...
