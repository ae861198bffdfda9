"""The embedded knowledge-base index (commands.ports.KbIndex): one SQLite file of its own,
searched in memory.

Lexical search is BM25 over each passage's content, title and heading (a word of the title
counts WEIGHT_TITLE times, of a heading WEIGHT_HEADING times); its words are those of
domain.kb_terms (folded and stemmed: "Café" finds "cafe", "running" finds "run"). Semantic
search is a dot product against every passage's embedding (the vectors are L2-normalised, so
the product is the cosine similarity).

The file. `chunks` keeps the passages, each with its vector as float32 bytes and its terms
(ids into the `terms` vocabulary, int32 bytes) with their weighted counts (float32 bytes) and
its length in words. `meta` holds a `generation` number that every write transaction bumps,
and the number of `rows` (every write goes through this class and keeps it exact). WAL mode:
readers never wait for a writer, and a writer (of this process or another one) waits up to
BUSY_TIMEOUT_MS for the previous one. A file of an older SCHEMA_VERSION is emptied when
opened (the index is derived: the ingestion worker's sweep reads every document again).

Connections. One writer connection, behind a lock (SQLite has one writer at a time anyway);
readers take a connection from a small pool (one per concurrent reader, created on demand).

Memory. Loaded at open: the matrix, parallel arrays of each row's seq, bot, collection (bots
and collections as small integer codes, so a scope is a vectorised comparison) and length,
and the postings (for each term, its rows and weighted counts) in a few segments sorted by
term, merged like a log-structured tree (a new segment per write; two neighbours merge when
the older one is at most twice the newer one's size, so there are O(log n) of them and each
posting is copied O(log n) times). Rows are appended into spare capacity and deleted rows are
only marked dead (a new `alive` array each time), so a search works on a consistent snapshot
without holding any lock while it computes, and a write costs time in proportion to its own
rows; dead rows (and their postings) are compacted away when they are more than half of the
matrix. A lexical query is then a few array operations per query term (its postings' scores
added into one array), whatever the number of passages that hold the term: no candidate is
left out and no score approximated (FTS5, before, scored every matching row through a
callback: 30 to 90 ms at 100,000 passages against about 5 ms now).

Keeping it current. This process's own writes update memory right after their commit.
Another process's writes (or another SqliteKbIndex on the same file) are noticed by each
search, which reads the `generation` row (one primary-key lookup, a few microseconds): when
it moved, the rows with a seq above the highest one already loaded are read (seqs are
AUTOINCREMENT, never reused, and a committed state holds every seq below its highest: the
writer is single), with the terms added to the vocabulary since, and the rows removed since
are read from the `removed` log (each write records there the seqs it deleted, under its
generation; the last REMOVED_KEPT generations are kept). If the count of rows then still
disagrees (memory is older than the log), the list of live seqs (an index scan, no vectors:
about 0.2 s at 100,000 passages) says which rows are dead. So a write elsewhere costs a
search about the write's own size, and never a full reload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy

from commands.ports import EMBEDDING_DIMENSION, KbChunk, KbHit, KbIndexUnavailable, KbScope
from domain.kb_terms import query_terms
from domain.kb_terms import terms as words_of
from infra.embeddings import passage_matrix

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Vectors = NDArray[numpy.float32]

BUSY_TIMEOUT_MS = 10_000
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to after a checkpoint
SCHEMA_VERSION = 2  # 1: lexical search by FTS5
# BM25 as FTS5 and Lucene compute it: k1 and b, and the column weights of a word (a word of the
# title or the headings says more about a passage than one word of its text).
BM25_K1 = 1.2
BM25_B = 0.75
WEIGHT_CONTENT = 1.0
WEIGHT_TITLE = 2.0
WEIGHT_HEADING = 1.5
IDS_PER_STATEMENT = 500
REMOVED_KEPT = 1000  # generations of the log of removed rows

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', {SCHEMA_VERSION}), ('generation', 0);
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    bot TEXT NOT NULL,
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    heading TEXT NOT NULL,
    position INTEGER NOT NULL,
    content TEXT NOT NULL,
    vector BLOB NOT NULL,
    terms BLOB NOT NULL,
    weights BLOB NOT NULL,
    length INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks (path);
INSERT OR IGNORE INTO meta (key, value) SELECT 'rows', count(*) FROM chunks;
CREATE TABLE IF NOT EXISTS removed (generation INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_generation ON removed (generation);
CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
"""
# What older schemas had, dropped before the tables are made again.
_OLD_OBJECTS = (
    "TRIGGER chunks_fts_insert",
    "TRIGGER chunks_fts_delete",
    "TRIGGER chunks_fts_update",
    "TABLE kb_fts",
    "TABLE chunks",
    "TABLE removed",
    "TABLE terms",
    "TABLE meta",
)

_CHUNK_COLUMNS = "id, bot, collection, path, title, heading, position, content"
_INSERT = (
    f"INSERT INTO chunks ({_CHUNK_COLUMNS}, vector, terms, weights, length)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def passage_terms(chunk: KbChunk) -> tuple[dict[str, float], int]:
    """The passage's terms with their weighted counts, and its length in words."""
    weighted: dict[str, float] = {}
    length = 0
    for text, weight in (
        (chunk.content, WEIGHT_CONTENT),
        (chunk.title, WEIGHT_TITLE),
        (chunk.heading, WEIGHT_HEADING),
    ):
        found = words_of(text)
        length += len(found)
        for term, count in Counter(found).items():
            weighted[term] = weighted.get(term, 0.0) + count * weight
    return weighted, length


@dataclass(frozen=True, slots=True)
class _Segment:
    """Postings sorted by term: those of term keys[i] are [starts[i], starts[i + 1])."""

    keys: NDArray[numpy.int32]
    starts: NDArray[numpy.int64]
    rows: NDArray[numpy.int32]
    weights: NDArray[numpy.float32]

    @staticmethod
    def of(
        terms: NDArray[numpy.int32], rows: NDArray[numpy.int32], weights: NDArray[numpy.float32]
    ) -> _Segment:
        order = numpy.argsort(terms, kind="stable")  # merges sorted runs in linear time
        terms = terms[order]
        keys, starts = numpy.unique(terms, return_index=True)
        return _Segment(
            keys.astype(numpy.int32),
            numpy.append(starts, len(terms)).astype(numpy.int64),
            rows[order],
            weights[order],
        )

    @property
    def size(self) -> int:
        return len(self.rows)

    def terms(self) -> NDArray[numpy.int32]:
        """Each posting's term."""
        return numpy.repeat(self.keys, numpy.diff(self.starts))

    def postings(self, term: int) -> tuple[NDArray[numpy.int32], NDArray[numpy.float32]] | None:
        i = int(numpy.searchsorted(self.keys, term))
        if i == len(self.keys) or self.keys[i] != term:
            return None
        start, end = self.starts[i], self.starts[i + 1]
        return self.rows[start:end], self.weights[start:end]

    @staticmethod
    def merged(segments: Sequence[_Segment], keep: NDArray[numpy.int32] | None = None) -> _Segment:
        """One segment of them all; with `keep` (new row number of each old row, -1 for a
        dead one), the postings of live rows only, renumbered."""
        terms = numpy.concatenate([s.terms() for s in segments])
        rows = numpy.concatenate([s.rows for s in segments])
        weights = numpy.concatenate([s.weights for s in segments])
        if keep is not None:
            rows = keep[rows]
            live = rows >= 0
            terms, rows, weights = terms[live], rows[live], weights[live]
        return _Segment.of(terms, rows, weights)


_NO_SEGMENT = _Segment(
    numpy.zeros(0, numpy.int32),
    numpy.zeros(1, numpy.int64),
    numpy.zeros(0, numpy.int32),
    numpy.zeros(0, numpy.float32),
)


@dataclass(frozen=True, slots=True)
class _Rows:
    """The matrix, its parallel arrays and the postings. Rows [:n] are in use; the buffers
    may be longer (capacity for appends). Published snapshots are never changed where a
    reader looks: appends write beyond their n, deletes publish a new `alive`, compaction new
    buffers; the segments hold postings of rows [:n] only."""

    n: int
    matrix: NDArray[numpy.float32]  # (capacity, EMBEDDING_DIMENSION)
    seqs: NDArray[numpy.int64]
    bots: NDArray[numpy.int32]
    collections: NDArray[numpy.int32]
    lengths: NDArray[numpy.float32]  # words in the passage
    ids: list[str]
    alive: NDArray[numpy.bool_]  # exactly n
    live: int
    segments: tuple[_Segment, ...]

    @staticmethod
    def empty(capacity: int = 1024) -> _Rows:
        return _Rows(
            0,
            numpy.zeros((capacity, EMBEDDING_DIMENSION), numpy.float32),
            numpy.zeros(capacity, numpy.int64),
            numpy.zeros(capacity, numpy.int32),
            numpy.zeros(capacity, numpy.int32),
            numpy.zeros(capacity, numpy.float32),
            [],
            numpy.zeros(0, numpy.bool_),
            0,
            (),
        )


@dataclass(frozen=True, slots=True)
class _NewRow:
    seq: int
    id: str
    bot: str
    collection: str
    terms: bytes  # int32 term ids
    weights: bytes  # float32 weighted counts, one per term
    length: int


def _normalised(vectors: NDArray[numpy.float32]) -> NDArray[numpy.float32]:
    norms = numpy.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1
    normalised: NDArray[numpy.float32] = (vectors / norms).astype(numpy.float32)
    return normalised


class SqliteKbIndex:
    """commands.ports.KbIndex on a SQLite file (created with its parents). Thread-safe; any
    number of instances, in any number of processes, may share the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._closed = False
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._state_lock = threading.Lock()
        self._rows = _Rows.empty()
        self._row_of: dict[int, int] = {}  # seq -> row of the current buffers
        self._last_seq = 0
        self._generation = -1
        self._bot_codes: dict[str, int] = {}
        self._collection_codes: dict[str, int] = {}
        self._vocabulary: dict[str, int] = {}  # term -> id, of the `terms` table
        self._last_term = 0  # the highest term id read from the file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode = WAL")
            self._writer.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._writer.execute("BEGIN IMMEDIATE")  # one process creates the tables
            version = _schema_version(self._writer)
            if version is not None and version > SCHEMA_VERSION:
                raise KbIndexUnavailable(
                    f"schema {version} is newer than this gbserver's ({SCHEMA_VERSION})"
                )
            if version is not None and version < SCHEMA_VERSION:
                for kind_name in _OLD_OBJECTS:
                    kind, name = kind_name.split()
                    self._writer.execute(f"DROP {kind} IF EXISTS {name}")
            for statement in _statements(_SCHEMA):
                self._writer.execute(statement)
            self._writer.execute("COMMIT")
            with self._state_lock, self._reader() as conn:
                self._sync(conn)  # the matrix
        except (sqlite3.Error, OSError, KbIndexUnavailable) as e:
            self._abandon()
            raise KbIndexUnavailable(
                f"cannot open the knowledge base index {self.path}: {e}"
            ) from e

    # --- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise KbIndexUnavailable("the knowledge base index is closed")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = self._connect()
            yield conn
        except sqlite3.OperationalError as e:
            raise KbIndexUnavailable(f"knowledge base index {self.path}: {e}") from e
        finally:
            if conn is not None:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                with self._pool_lock:
                    if self._closed:
                        conn.close()
                    else:
                        self._idle.append(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, in a transaction that holds the file's write lock."""
        with self._write_lock:
            if self._closed:
                raise KbIndexUnavailable("the knowledge base index is closed")
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as e:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError):
                    raise KbIndexUnavailable(f"knowledge base index {self.path}: {e}") from e
                raise

    # --- writes ---------------------------------------------------------------------------

    def replace(self, path: str, chunks: Sequence[KbChunk], vectors: Vectors) -> None:
        matrix = passage_matrix(path, chunks, vectors)
        matrix = _normalised(matrix)
        postings = [passage_terms(chunk) for chunk in chunks]
        added: list[_NewRow] = []
        with self._writing() as conn:
            removed = [
                seq for (seq,) in conn.execute("SELECT seq FROM chunks WHERE path = ?", (path,))
            ]
            conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            new_terms = self._new_terms(conn, {term for found, _ in postings for term in found})
            for chunk, vector, (found, length) in zip(chunks, matrix, postings, strict=True):
                term_ids = numpy.fromiter(
                    (self._vocabulary.get(term) or new_terms[term] for term in found),
                    "<i4",
                    len(found),
                ).tobytes()
                weights = numpy.fromiter(found.values(), "<f4", len(found)).tobytes()
                cursor = conn.execute(
                    _INSERT,
                    (
                        chunk.id,
                        chunk.bot,
                        chunk.collection,
                        chunk.path,
                        chunk.title,
                        chunk.heading,
                        chunk.position,
                        chunk.content,
                        vector.astype("<f4").tobytes(),
                        term_ids,
                        weights,
                        length,
                    ),
                )
                assert cursor.lastrowid is not None
                added.append(
                    _NewRow(
                        cursor.lastrowid,
                        chunk.id,
                        chunk.bot,
                        chunk.collection,
                        term_ids,
                        weights,
                        length,
                    )
                )
            generation = self._bump(conn, removed, len(added))
        self._applied(generation, removed, added, matrix, new_terms)

    def _new_terms(self, conn: sqlite3.Connection, terms: set[str]) -> dict[str, int]:
        """Ids for the terms this process does not know yet, from the vocabulary (new ones
        added to it). Known to this process only once the transaction commits."""
        missing = [term for term in terms if term not in self._vocabulary]
        conn.executemany(
            "INSERT INTO terms (term) VALUES (?) ON CONFLICT (term) DO NOTHING",
            [(term,) for term in missing],
        )
        found: dict[str, int] = {}
        for start in range(0, len(missing), IDS_PER_STATEMENT):
            batch = missing[start : start + IDS_PER_STATEMENT]
            marks = ",".join("?" * len(batch))
            found.update(
                (term, id_)
                for id_, term in conn.execute(
                    f"SELECT id, term FROM terms WHERE term IN ({marks})", batch
                )
            )
        return found

    def delete(self, path: str) -> None:
        with self._writing() as conn:
            removed = [
                seq for (seq,) in conn.execute("SELECT seq FROM chunks WHERE path = ?", (path,))
            ]
            if not removed:
                return
            conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            generation = self._bump(conn, removed, 0)
        self._applied(
            generation, removed, [], numpy.zeros((0, EMBEDDING_DIMENSION), numpy.float32), {}
        )

    @staticmethod
    def _bump(conn: sqlite3.Connection, removed: Sequence[int], added: int) -> int:
        """The write's generation; the rows it removed are logged under it (for the matrices
        of other processes), and log entries older than REMOVED_KEPT generations dropped."""
        (generation,) = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
        ).fetchone()
        conn.execute(
            "UPDATE meta SET value = value + ? WHERE key = 'rows'", (added - len(removed),)
        )
        conn.executemany(
            "INSERT INTO removed (generation, seq) VALUES (?, ?)",
            [(generation, seq) for seq in removed],
        )
        conn.execute("DELETE FROM removed WHERE generation <= ?", (generation - REMOVED_KEPT,))
        return int(generation)

    def _applied(
        self,
        generation: int,
        removed: Sequence[int],
        added: Sequence[_NewRow],
        matrix: NDArray[numpy.float32],
        new_terms: dict[str, int],
    ) -> None:
        """This process's committed write, into memory: in place when memory was at the
        generation just before; read from the file when another writer came between."""
        with self._state_lock:
            if self._generation >= generation:
                return  # a search already read this write (and maybe later ones) from the file
            if self._generation == generation - 1:
                self._vocabulary.update(new_terms)
                self._last_term = max(self._last_term, *new_terms.values(), 0)
                self._kill(removed)
                self._append(added, matrix)
                self._generation = generation
                return
        with self._state_lock, self._reader() as conn:
            self._sync(conn)

    # --- the matrix (under _state_lock) ----------------------------------------------------

    def _code(self, codes: dict[str, int], name: str) -> int:
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(codes)
        return code

    def _append(self, added: Sequence[_NewRow], matrix: NDArray[numpy.float32]) -> None:
        if not added:
            return
        rows = self._rows
        m = len(added)
        if rows.n + m > len(rows.matrix):
            rows = self._compacted(rows, extra=m)
        n = rows.n
        rows.matrix[n : n + m] = matrix
        rows.seqs[n : n + m] = [row.seq for row in added]
        rows.bots[n : n + m] = [self._code(self._bot_codes, row.bot) for row in added]
        rows.collections[n : n + m] = [
            self._code(self._collection_codes, row.collection) for row in added
        ]
        rows.lengths[n : n + m] = [row.length for row in added]
        rows.ids.extend(row.id for row in added)
        for offset, row in enumerate(added):
            self._row_of[row.seq] = n + offset
        terms = [numpy.frombuffer(row.terms, "<i4") for row in added]
        new = _Segment.of(
            numpy.concatenate(terms).astype(numpy.int32),
            numpy.repeat(numpy.arange(n, n + m, dtype=numpy.int32), [len(t) for t in terms]),
            numpy.concatenate([numpy.frombuffer(row.weights, "<f4") for row in added]).astype(
                numpy.float32
            ),
        )
        segments = [*rows.segments, new]
        while len(segments) > 1 and segments[-2].size <= 2 * segments[-1].size:
            segments[-2:] = [_Segment.merged(segments[-2:])]
        self._rows = dataclasses.replace(
            rows,
            n=n + m,
            alive=numpy.concatenate([rows.alive, numpy.ones(m, numpy.bool_)]),
            live=rows.live + m,
            segments=tuple(segments),
        )
        self._last_seq = max(self._last_seq, max(row.seq for row in added))

    def _kill(self, seqs: Sequence[int]) -> None:
        found = [row for row in (self._row_of.pop(seq, None) for seq in seqs) if row is not None]
        if not found:
            return
        rows = self._rows
        alive = rows.alive.copy()
        alive[found] = False
        live = rows.live - len(found)
        self._rows = dataclasses.replace(rows, alive=alive, live=live)
        if rows.n - live > max(4096, rows.n // 2):
            self._rows = self._compacted(self._rows, extra=0)

    def _compacted(self, rows: _Rows, extra: int) -> _Rows:
        """New buffers holding the live rows only, with room for `extra` more (and then some)."""
        keep = numpy.flatnonzero(rows.alive)
        live = len(keep)
        capacity = max(1024, live + extra, (live + extra) * 3 // 2)
        matrix = numpy.zeros((capacity, EMBEDDING_DIMENSION), numpy.float32)
        seqs = numpy.zeros(capacity, numpy.int64)
        bots = numpy.zeros(capacity, numpy.int32)
        collections = numpy.zeros(capacity, numpy.int32)
        lengths = numpy.zeros(capacity, numpy.float32)
        matrix[:live] = rows.matrix[keep]
        seqs[:live] = rows.seqs[keep]
        bots[:live] = rows.bots[keep]
        collections[:live] = rows.collections[keep]
        lengths[:live] = rows.lengths[keep]
        ids = [rows.ids[i] for i in keep]
        self._row_of = {int(seq): i for i, seq in enumerate(seqs[:live])}
        renumbered = numpy.full(rows.n, -1, numpy.int32)
        renumbered[keep] = numpy.arange(live, dtype=numpy.int32)
        segments = (_Segment.merged(rows.segments, renumbered),) if rows.segments else ()
        return _Rows(
            live,
            matrix,
            seqs,
            bots,
            collections,
            lengths,
            ids,
            numpy.ones(live, numpy.bool_),
            live,
            segments,
        )

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Brings memory to the file's current generation (another writer's changes)."""
        conn.execute("BEGIN")  # one read snapshot for all of it
        try:
            (generation,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'generation'"
            ).fetchone()
            if generation == self._generation:
                return
            new = conn.execute(
                "SELECT seq, id, bot, collection, terms, weights, length, vector FROM chunks"
                " WHERE seq > ? ORDER BY seq",
                (self._last_seq,),
            ).fetchall()
            terms = conn.execute(
                "SELECT id, term FROM terms WHERE id > ?", (self._last_term,)
            ).fetchall()
            if self._rows.live and self._generation >= generation - REMOVED_KEPT:
                self._kill(
                    [
                        seq
                        for (seq,) in conn.execute(
                            "SELECT seq FROM removed WHERE generation > ?", (self._generation,)
                        )
                    ]
                )
            total = _rows(conn)
            if self._rows.live + len(new) != total:  # deleted rows the log no longer has
                kept = numpy.fromiter(
                    (
                        seq
                        for (seq,) in conn.execute(
                            "SELECT seq FROM chunks WHERE seq <= ?", (self._last_seq,)
                        )
                    ),
                    numpy.int64,
                )
                rows = self._rows
                gone = rows.alive & ~numpy.isin(rows.seqs[: rows.n], kept)
                self._kill([int(seq) for seq in rows.seqs[: rows.n][gone]])
        finally:
            conn.execute("COMMIT")
        self._vocabulary.update((term, id_) for id_, term in terms)
        self._last_term = max(self._last_term, *(id_ for id_, _ in terms), 0)
        if new:
            matrix = numpy.frombuffer(b"".join(row[-1] for row in new), dtype="<f4").reshape(
                len(new), EMBEDDING_DIMENSION
            )
            self._append([_NewRow(*row[:-1]) for row in new], matrix.astype(numpy.float32))
        self._generation = int(generation)

    def _current(self, conn: sqlite3.Connection) -> _Rows:
        """The matrix, brought up to date if the file changed since."""
        (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if generation != self._generation:
            with self._state_lock:
                if generation != self._generation:
                    self._sync(conn)
        return self._rows

    # --- searches -------------------------------------------------------------------------

    def lexical(self, query: str, scope: KbScope, k: int) -> list[KbHit]:
        """BM25 (as FTS5 computes it: IDF log((N - df + 0.5) / (df + 0.5)), 1e-6 when that is
        not positive, N and the mean length over every live passage) of each passage holding
        any of the query's terms, summed over the terms."""
        words = query_terms(query)
        if not words or k <= 0 or scope.collections == frozenset():
            return []
        with self._reader() as conn:
            rows = self._current(conn)
        if rows.live == 0:
            return []
        term_ids = {self._vocabulary[word] for word in words if word in self._vocabulary}
        if not term_ids:
            return []
        n, alive = rows.n, rows.alive
        lengths = rows.lengths[:n]
        mean_length = max(float(lengths[alive].sum()) / rows.live, 1.0)
        scores = numpy.zeros(n, numpy.float32)
        for term in term_ids:
            found = [p for p in (s.postings(term) for s in rows.segments) if p is not None]
            if not found:
                continue
            where = numpy.concatenate([r for r, _ in found])
            counts = numpy.concatenate([w for _, w in found])
            live = alive[where]
            where, counts = where[live], counts[live]
            if len(where) == 0:
                continue
            idf = math.log((rows.live - len(where) + 0.5) / (len(where) + 0.5))
            if idf <= 0:
                idf = 1e-6
            norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[where] / mean_length)
            scores[where] += idf * counts * (BM25_K1 + 1) / (counts + norm)
        mask = self._in_scope(rows, scope)
        if mask is None:
            return []
        candidates = numpy.flatnonzero(mask & (scores > 0))
        return _best(rows, candidates, scores[candidates], k)

    def semantic(self, vector: Vectors, scope: KbScope, k: int) -> list[KbHit]:
        query = _query_vector(vector)
        if k <= 0 or scope.collections == frozenset():
            return []
        with self._reader() as conn:
            rows = self._current(conn)
        n = rows.n
        if rows.live == 0:
            return []
        mask = self._in_scope(rows, scope)
        if mask is None:
            return []
        candidates = numpy.flatnonzero(mask)
        if len(candidates) == 0:
            return []
        if len(candidates) * 8 < n:  # a small scope: gather its rows
            scores = rows.matrix[candidates] @ query
        elif len(candidates) == n:
            scores = rows.matrix[:n] @ query
        else:  # most rows: one pass over the matrix is cheaper than copying them
            scores = (rows.matrix[:n] @ query)[candidates]
        return _best(rows, candidates, numpy.clip(scores, -1.0, 1.0), k)

    def similarity(self, vector: Vectors, ids: Sequence[str]) -> dict[str, float]:
        query = _query_vector(vector)
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        seqs: dict[str, int] = {}
        with self._reader() as conn:
            self._current(conn)
            for start in range(0, len(wanted), IDS_PER_STATEMENT):
                batch = wanted[start : start + IDS_PER_STATEMENT]
                marks = ",".join("?" * len(batch))
                seqs.update(
                    conn.execute(f"SELECT id, seq FROM chunks WHERE id IN ({marks})", batch)
                )
        with self._state_lock:  # the buffers and the seq -> row map of the same moment
            rows = self._rows
            found = [(id_, self._row_of[seq]) for id_, seq in seqs.items() if seq in self._row_of]
        if not found:
            return {}
        scores = numpy.clip(rows.matrix[[row for _, row in found]] @ query, -1.0, 1.0)
        return {id_: float(score) for (id_, _), score in zip(found, scores, strict=True)}

    def _in_scope(self, rows: _Rows, scope: KbScope) -> NDArray[numpy.bool_] | None:
        """The live rows in scope; None when the scope names nothing the index has."""
        n = rows.n
        mask = rows.alive
        if scope.bot is not None:
            code = self._bot_codes.get(scope.bot)
            if code is None:
                return None
            mask = mask & (rows.bots[:n] == code)
        if scope.collections is not None:
            codes = [
                self._collection_codes[name]
                for name in scope.collections
                if name in self._collection_codes
            ]
            if not codes:
                return None
            mask = mask & numpy.isin(rows.collections[:n], codes)
        return mask

    # --- reads ----------------------------------------------------------------------------

    def chunks(self, ids: Sequence[str]) -> dict[str, KbChunk]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, KbChunk] = {}
        with self._reader() as conn:
            for start in range(0, len(wanted), IDS_PER_STATEMENT):
                batch = wanted[start : start + IDS_PER_STATEMENT]
                marks = ",".join("?" * len(batch))
                for row in conn.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", batch
                ):
                    chunk = KbChunk(*row)
                    found[chunk.id] = chunk
        return found

    def paths(self) -> set[str]:
        with self._reader() as conn:
            return {path for (path,) in conn.execute("SELECT DISTINCT path FROM chunks")}

    def count(self) -> int:
        with self._reader() as conn:
            (count,) = conn.execute("SELECT count(*) FROM chunks").fetchone()
        return int(count)

    def check(self) -> None:
        """The file opens (it exists: not created again) and its tables answer."""
        if self._closed:
            raise KbIndexUnavailable("the knowledge base index is closed")
        try:
            conn = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
            )
            try:
                conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                conn.execute("SELECT seq FROM chunks LIMIT 1").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise KbIndexUnavailable(f"knowledge base index {self.path}: {e}") from e

    def close(self) -> None:
        with self._write_lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._writer.close()

    def _abandon(self) -> None:
        """A failed open: whatever connections it made are closed."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in [*idle, getattr(self, "_writer", None)]:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version; None for a new file."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return None
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if found is None else int(found[0])


def _rows(conn: sqlite3.Connection) -> int:
    """The passages, as the writes counted them (count(*) scans an index: 6 ms at 100,000)."""
    (rows,) = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()
    return int(rows)


def _statements(script: str) -> list[str]:
    """The script's statements (sqlite3.complete_statement knows where triggers end)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete statement: {current!r}")
    return statements


def _query_vector(vector: Vectors) -> NDArray[numpy.float32]:
    """A query's vector, checked and L2-normalised (all zeros stays so: it is like nothing)."""
    query = numpy.asarray(vector, dtype=numpy.float32).reshape(-1)
    if query.shape != (EMBEDDING_DIMENSION,):
        raise ValueError(f"a query vector has {EMBEDDING_DIMENSION} numbers, not {query.size}")
    if not numpy.isfinite(query).all():
        raise ValueError("the query vector is not finite")
    norm = float(numpy.linalg.norm(query))
    return query / norm if norm > 0 else query


def _best(
    rows: _Rows, candidates: NDArray[numpy.intp], scores: NDArray[numpy.float32], k: int
) -> list[KbHit]:
    """The k best-scored candidates (rows, in ascending order), best first; ties in row order,
    which is the order the passages were written in."""
    if k < len(scores):
        top = numpy.sort(numpy.argpartition(scores, len(scores) - k)[len(scores) - k :])
    else:
        top = numpy.arange(len(scores))
    top = top[numpy.argsort(-scores[top], kind="stable")]
    return [KbHit(rows.ids[int(candidates[i])], float(scores[i])) for i in top]
