"""The embedded knowledge-base index (commands.ports.KbIndex): one SQLite file of its own.

Lexical search is SQLite FTS5 (BM25) over each passage's content, title and heading; semantic
search is a dot product against every passage's embedding, held in memory as one float32
matrix (the vectors are L2-normalised, so the product is the cosine similarity).

The file. `chunks` keeps the passages, each with its vector as float32 bytes; `kb_fts` is an
external-content FTS5 table over it (content=chunks, content_rowid=seq) kept in step by
triggers, tokenised `porter unicode61 remove_diacritics 2` ("café" finds "cafe", "running"
finds "run"). `meta` holds a `generation` number that every write transaction bumps, and the
number of `rows` (every write goes through this class and keeps it exact). WAL mode:
readers never wait for a writer, and a writer (of this process or another one) waits up to
BUSY_TIMEOUT_MS for the previous one.

Connections. One writer connection, behind a lock (SQLite has one writer at a time anyway);
readers take a connection from a small pool (one per concurrent reader, created on demand), so
searches run in parallel with each other and with a long write.

The matrix. Loaded at open, together with parallel arrays of each row's seq, bot and
collection (bots and collections as small integer codes, so a scope is a vectorised
comparison). Rows are appended into spare capacity and deleted rows are only marked dead (a
new `alive` array each time), so a search works on a consistent snapshot without holding any
lock while it computes, and a write costs time in proportion to its own rows; dead rows are
compacted away when they are more than half of the matrix.

Keeping the matrix current. This process's own writes update it in place right after their
commit. Another process's writes (or another SqliteKbIndex on the same file) are noticed by
each semantic search, which reads the `generation` row (one primary-key lookup, a few
microseconds): when it moved, the rows with a seq above the highest one already loaded are read
(seqs are AUTOINCREMENT, never reused, and a committed state holds every seq below its
highest: the writer is single), and the rows removed since are read from the `removed` log
(each write records there the seqs it deleted, under its generation; the last REMOVED_KEPT
generations are kept). If the count of rows then still disagrees (the matrix is older than
the log), the list of live seqs (an index scan, no vectors: about
0.2 s at 100,000 passages) says which rows are dead. So a write elsewhere costs a search
about the write's own size, and never a full reload.

Lexical queries. The user's words only, each quoted as an FTS5 string and OR'ed; no operator,
column filter, prefix or NEAR of theirs reaches FTS5. In a large index, the passages that only
have the query's common words are not scored (the rarer words choose the candidates, all the
words score them, with the same BM25 as the plain OR): see `SqliteKbIndex._expressions`.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy

from commands.ports import EMBEDDING_DIMENSION, KbChunk, KbHit, KbIndexUnavailable, KbScope
from infra.embeddings import passage_matrix

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Vectors = NDArray[numpy.float32]

BUSY_TIMEOUT_MS = 10_000
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is cut back to after a checkpoint
SCHEMA_VERSION = 1
# bm25() column weights, in the FTS table's column order: a word of the title or the headings
# says more about a passage than one word of its text.
WEIGHT_CONTENT = 1.0
WEIGHT_TITLE = 2.0
WEIGHT_HEADING = 1.5
MAX_QUERY_TERMS = 64  # distinct words of a lexical query; the rest are ignored
MAX_TERM_CHARS = 100
# Past this many passages, a lexical query's common words only score the passages its rarer
# words find (SqliteKbIndex._expressions): about the most passages one query scores.
CANDIDATE_BUDGET = 3_000
FREQUENCY_TTL = 60.0  # seconds
FREQUENCY_DRIFT = 20  # forgotten, too, when the passage count moved by more than 1/20
FREQUENCY_CACHE = 10_000  # words
IDS_PER_STATEMENT = 500
REMOVED_KEPT = 1000  # generations of the log of removed rows
# FTS5's unicode61 tokenizer splits at anything but letters, numbers (and private use); so do
# these words: whatever else the user typed (quotes, operators, `col:`, `*`, `^`) is dropped.
_WORD = re.compile(r"[^\W_]+")

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
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks (path);
INSERT OR IGNORE INTO meta (key, value) SELECT 'rows', count(*) FROM chunks;
CREATE TABLE IF NOT EXISTS removed (generation INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_generation ON removed (generation);
CREATE VIRTUAL TABLE IF NOT EXISTS kb_fts USING fts5(
    content, title, heading,
    content = 'chunks', content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO kb_fts (rowid, content, title, heading)
    VALUES (new.seq, new.content, new.title, new.heading);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO kb_fts (kb_fts, rowid, content, title, heading)
    VALUES ('delete', old.seq, old.content, old.title, old.heading);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_update AFTER UPDATE ON chunks BEGIN
    INSERT INTO kb_fts (kb_fts, rowid, content, title, heading)
    VALUES ('delete', old.seq, old.content, old.title, old.heading);
    INSERT INTO kb_fts (rowid, content, title, heading)
    VALUES (new.seq, new.content, new.title, new.heading);
END;
"""

_CHUNK_COLUMNS = "id, bot, collection, path, title, heading, position, content"
_INSERT = f"INSERT INTO chunks ({_CHUNK_COLUMNS}, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def query_terms(text: str) -> list[str]:
    """The user's text as FTS5 terms that are safe to OR: each distinct word a quoted string
    (FTS5's tokenizer, run on it, folds case and diacritics and stems it like the passages)."""
    words: dict[str, None] = {}
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        words.setdefault(word.casefold()[:MAX_TERM_CHARS], None)
        if len(words) == MAX_QUERY_TERMS:
            break
    return ['"' + word.replace('"', '""') + '"' for word in words]


def fts_query(text: str) -> str:
    """The user's text as a safe FTS5 expression, its words OR'ed (BM25 weighs rare words up
    and common ones down). "" when there is no word."""
    return " OR ".join(query_terms(text))


@dataclass(frozen=True, slots=True)
class _Rows:
    """The matrix and its parallel arrays. Rows [:n] are in use; the buffers may be longer
    (capacity for appends). Published snapshots are never changed where a reader looks:
    appends write beyond their n, deletes publish a new `alive`, compaction new buffers."""

    n: int
    matrix: NDArray[numpy.float32]  # (capacity, EMBEDDING_DIMENSION)
    seqs: NDArray[numpy.int64]
    bots: NDArray[numpy.int32]
    collections: NDArray[numpy.int32]
    ids: list[str]
    alive: NDArray[numpy.bool_]  # exactly n
    live: int

    @staticmethod
    def empty(capacity: int = 1024) -> _Rows:
        return _Rows(
            0,
            numpy.zeros((capacity, EMBEDDING_DIMENSION), numpy.float32),
            numpy.zeros(capacity, numpy.int64),
            numpy.zeros(capacity, numpy.int32),
            numpy.zeros(capacity, numpy.int32),
            [],
            numpy.zeros(0, numpy.bool_),
            0,
        )


@dataclass(frozen=True, slots=True)
class _NewRow:
    seq: int
    id: str
    bot: str
    collection: str


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
        self._frequency: dict[str, int] = {}  # lexical term -> passages with it (common ones)
        self._frequency_since = 0.0
        self._frequency_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode = WAL")
            self._writer.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            self._writer.execute("BEGIN IMMEDIATE")  # one process creates the tables
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
        added: list[_NewRow] = []
        with self._writing() as conn:
            removed = [
                seq for (seq,) in conn.execute("SELECT seq FROM chunks WHERE path = ?", (path,))
            ]
            conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            for chunk, vector in zip(chunks, matrix, strict=True):
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
                    ),
                )
                assert cursor.lastrowid is not None
                added.append(_NewRow(cursor.lastrowid, chunk.id, chunk.bot, chunk.collection))
            generation = self._bump(conn, removed, len(added))
        self._applied(generation, removed, added, matrix)

    def delete(self, path: str) -> None:
        with self._writing() as conn:
            removed = [
                seq for (seq,) in conn.execute("SELECT seq FROM chunks WHERE path = ?", (path,))
            ]
            if not removed:
                return
            conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
            generation = self._bump(conn, removed, 0)
        self._applied(generation, removed, [], numpy.zeros((0, EMBEDDING_DIMENSION), numpy.float32))

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
    ) -> None:
        """This process's committed write, into the matrix: in place when the matrix was at
        the generation just before; read from the file when another writer came between."""
        with self._state_lock:
            if self._generation >= generation:
                return  # a search already read this write (and maybe later ones) from the file
            if self._generation == generation - 1:
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
        rows.ids.extend(row.id for row in added)
        for offset, row in enumerate(added):
            self._row_of[row.seq] = n + offset
        self._rows = _Rows(
            n + m,
            rows.matrix,
            rows.seqs,
            rows.bots,
            rows.collections,
            rows.ids,
            numpy.concatenate([rows.alive, numpy.ones(m, numpy.bool_)]),
            rows.live + m,
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
        self._rows = _Rows(
            rows.n, rows.matrix, rows.seqs, rows.bots, rows.collections, rows.ids, alive, live
        )
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
        matrix[:live] = rows.matrix[keep]
        seqs[:live] = rows.seqs[keep]
        bots[:live] = rows.bots[keep]
        collections[:live] = rows.collections[keep]
        ids = [rows.ids[i] for i in keep]
        self._row_of = {int(seq): i for i, seq in enumerate(seqs[:live])}
        return _Rows(
            live, matrix, seqs, bots, collections, ids, numpy.ones(live, numpy.bool_), live
        )

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Brings the matrix to the file's current generation (another writer's changes)."""
        conn.execute("BEGIN")  # one read snapshot for all of it
        try:
            (generation,) = conn.execute(
                "SELECT value FROM meta WHERE key = 'generation'"
            ).fetchone()
            if generation == self._generation:
                return
            new = conn.execute(
                "SELECT seq, id, bot, collection, vector FROM chunks WHERE seq > ? ORDER BY seq",
                (self._last_seq,),
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
        if new:
            matrix = numpy.frombuffer(
                b"".join(vector for (_, _, _, _, vector) in new), dtype="<f4"
            ).reshape(len(new), EMBEDDING_DIMENSION)
            self._append(
                [_NewRow(seq, id_, bot, collection) for (seq, id_, bot, collection, _) in new],
                matrix.astype(numpy.float32),
            )
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
        terms = query_terms(query)
        if not terms or k <= 0 or scope.collections == frozenset():
            return []
        where, params = _scope_sql(scope)
        select = (
            f"SELECT c.id, c.seq, bm25(kb_fts, {WEIGHT_CONTENT}, {WEIGHT_TITLE}, {WEIGHT_HEADING})"
            f" AS rank FROM kb_fts JOIN chunks AS c ON c.seq = kb_fts.rowid"
            f" WHERE kb_fts MATCH ?{where}"
        )
        with self._reader() as conn:
            expressions = self._expressions(conn, terms)
            sql = " UNION ALL ".join([select] * len(expressions))
            found = conn.execute(
                f"SELECT id, rank FROM ({sql}) ORDER BY rank, seq LIMIT ?",
                [*(value for e in expressions for value in (e, *params)), k],
            ).fetchall()
        return [KbHit(chunk_id, -float(rank)) for chunk_id, rank in found]

    def _expressions(self, conn: sqlite3.Connection, terms: list[str]) -> list[str]:
        """The FTS5 expressions that find the query's passages: their union is the answer.

        The plain one is every term OR'ed. But FTS5 scores every passage that matches before
        it sorts, and a common word matches most of them (0.2 to 1 s for "what is the ..." at
        100,000 passages). So in an index of more than CANDIDATE_BUDGET passages:
        - a term found in half the passages or more is left out: FTS5's BM25 weighs it by
          1e-6 (its IDF, log((N - n + 0.5) / (n + 0.5)), is <= 0 and clamped), so no score
          changes (unless every term is like that: then they are searched as they are);
        - of the rest, the rarest terms whose passages add up to CANDIDATE_BUDGET (at least
          one term) choose the candidates, and the others (C) only score them: the
          expressions are `(S) AND (C)` and `(S) NOT (C)`, which match the passages with a
          term of S, each once, and give them exactly the BM25 score of the plain OR (every
          phrase appears once in each; FTS5 computes a phrase's IDF over the whole table).
          What is lost is the passages with common words only, below the candidates'
          scores mostly, and left to the semantic retriever.
        A term's passage count is one FTS5 count (fast for rare words); those of common words
        are remembered for FREQUENCY_TTL seconds while the passage count stays put."""
        everything = [" OR ".join(terms)]
        if len(terms) == 1:
            return everything
        total = _rows(conn)
        if total <= CANDIDATE_BUDGET:
            return everything
        now = time.monotonic()
        if (
            now - self._frequency_since > FREQUENCY_TTL
            or abs(total - self._frequency_rows) * FREQUENCY_DRIFT > total
            or len(self._frequency) > FREQUENCY_CACHE
        ):
            self._frequency = {}
            self._frequency_since, self._frequency_rows = now, total
        frequency = self._frequency
        counted: list[tuple[int, str]] = []
        for term in terms:
            found = frequency.get(term)
            if found is None:
                (found,) = conn.execute(
                    "SELECT count(*) FROM kb_fts WHERE kb_fts MATCH ?", (term,)
                ).fetchone()
                if found * 100 >= total:  # worth remembering: counting it took a while
                    frequency[term] = found
            if found > 0 and 2 * found < total:
                counted.append((found, term))
        if not counted:
            return everything  # nothing matches, or only words most passages have
        counted.sort()
        chosen, budget = [counted[0][1]], counted[0][0]
        for found, term in counted[1:]:
            if budget + found > CANDIDATE_BUDGET:
                break
            chosen.append(term)
            budget += found
        candidates = " OR ".join(chosen)
        others = " OR ".join(term for _, term in counted[len(chosen) :])
        if not others:
            return [candidates]
        return [f"({candidates}) AND ({others})", f"({candidates}) NOT ({others})"]

    def semantic(self, vector: Vectors, scope: KbScope, k: int) -> list[KbHit]:
        query = numpy.asarray(vector, dtype=numpy.float32).reshape(-1)
        if query.shape != (EMBEDDING_DIMENSION,):
            raise ValueError(f"a query vector has {EMBEDDING_DIMENSION} numbers, not {query.size}")
        if not numpy.isfinite(query).all():
            raise ValueError("the query vector is not finite")
        if k <= 0 or scope.collections == frozenset():
            return []
        norm = float(numpy.linalg.norm(query))
        if norm > 0:
            query = query / norm
        with self._reader() as conn:
            rows = self._current(conn)
        n = rows.n
        if rows.live == 0:
            return []
        mask = rows.alive
        if scope.bot is not None:
            code = self._bot_codes.get(scope.bot)
            if code is None:
                return []
            mask = mask & (rows.bots[:n] == code)
        if scope.collections is not None:
            codes = [
                self._collection_codes[name]
                for name in scope.collections
                if name in self._collection_codes
            ]
            if not codes:
                return []
            mask = mask & numpy.isin(rows.collections[:n], codes)
        candidates = numpy.flatnonzero(mask)
        if len(candidates) == 0:
            return []
        if len(candidates) * 8 < n:  # a small scope: gather its rows
            scores = rows.matrix[candidates] @ query
        elif len(candidates) == n:
            scores = rows.matrix[:n] @ query
        else:  # most rows: one pass over the matrix is cheaper than copying them
            scores = (rows.matrix[:n] @ query)[candidates]
        if k < len(scores):
            top = numpy.argpartition(scores, len(scores) - k)[len(scores) - k :]
        else:
            top = numpy.arange(len(scores))
        top = top[numpy.argsort(-scores[top], kind="stable")]
        best = numpy.clip(scores[top], -1.0, 1.0)
        return [
            KbHit(rows.ids[int(candidates[i])], float(score))
            for i, score in zip(top, best, strict=True)
        ]

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


def _scope_sql(scope: KbScope) -> tuple[str, list[str]]:
    where = ""
    params: list[str] = []
    if scope.bot is not None:
        where += " AND c.bot = ?"
        params.append(scope.bot)
    if scope.collections is not None:
        names = sorted(scope.collections)
        where += f" AND c.collection IN ({','.join('?' * len(names))})"
        params.extend(names)
    return where, params
