"""Knowledge-base read model: the documents of every collection and where their indexing is.

A projection of the drive's events: a file uploaded under `{bot}.gbai/{bot}.gbkb/{collection}/`
becomes a `pending` document; a deleted one `deleting`. The ingestion worker (infra.kb_worker)
takes those, reads them into the index (commands.ports.KbIndex) and records the outcome here:
`indexed` with its passage count, or `error` with what is wrong with the file (a corrupt PDF
is reported and blocks nothing else). It records an outcome only for the version it read, so
a file replaced meanwhile stays pending.

A reindex request (domain.kb.ReindexJob) makes the documents it names pending again, tagged
with the job, whose progress is the share of them no longer pending. Rebuilding this
projection makes every document pending: the index is rebuilt from the log (and the blobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from domain.common import rfc3339
from domain.drive import BOTS_SPACE
from domain.kb import kb_location
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

State = Literal["pending", "indexed", "error", "deleting"]


class KbProjection(Projection):
    name = "kb"
    tables = ("kb_documents", "kb_jobs")
    schema = (
        "CREATE TABLE IF NOT EXISTS kb_documents ("
        " path TEXT PRIMARY KEY, bot TEXT NOT NULL, collection TEXT NOT NULL,"
        " sha256 TEXT NOT NULL, version BIGINT NOT NULL, content_type TEXT NOT NULL,"
        " size BIGINT NOT NULL, state TEXT NOT NULL, error TEXT, chunks BIGINT NOT NULL,"
        " updated_at TEXT NOT NULL, indexed_at TEXT, job TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS kb_documents_collection ON kb_documents (bot, collection)",
        "CREATE INDEX IF NOT EXISTS kb_documents_state ON kb_documents (state)",
        "CREATE TABLE IF NOT EXISTS kb_jobs ("
        " id TEXT PRIMARY KEY, bot TEXT, collection TEXT, requested_by TEXT NOT NULL,"
        " requested_at TEXT NOT NULL, total BIGINT NOT NULL)",
    )

    @handles("gbserver.drive.FileUploaded")
    def uploaded(self, sql: Sql, e: Any) -> None:
        where = kb_location(e.path) if e.space == BOTS_SPACE else None
        if where is None:
            return
        sql.execute(
            "INSERT INTO kb_documents (path, bot, collection, sha256, version, content_type,"
            " size, state, error, chunks, updated_at, indexed_at, job)"
            " VALUES (?,?,?,?,?,?,?,'pending',NULL,0,?,NULL,'')"
            " ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256,"
            " version = excluded.version, content_type = excluded.content_type,"
            " size = excluded.size, state = 'pending', error = NULL,"
            " updated_at = excluded.updated_at, job = ''",
            (
                e.path,
                where.bot,
                where.collection,
                e.sha256,
                e.version,
                e.content_type,
                e.size,
                rfc3339(e.timestamp),
            ),
        )

    @handles("gbserver.drive.FileDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        if e.space == BOTS_SPACE and kb_location(e.path) is not None:
            sql.execute(
                "UPDATE kb_documents SET state = 'deleting', updated_at = ? WHERE path = ?",
                (rfc3339(e.timestamp), e.path),
            )

    @handles("gbserver.kb.ReindexRequested")
    def reindex(self, sql: Sql, e: Any) -> None:
        job = str(e.originator_id)
        where = Where().add("state <> 'deleting'")
        where.equal("bot", e.bot).equal("collection", e.collection)
        sql.execute(f"SELECT COUNT(*) AS n FROM kb_documents{where.sql}", where.params)
        row = sql.fetchone()
        sql.execute(
            f"UPDATE kb_documents SET state = 'pending', error = NULL, job = ?{where.sql}",
            (job, *where.params),
        )
        sql.execute(
            "INSERT INTO kb_jobs (id, bot, collection, requested_by, requested_at, total)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
            (job, e.bot, e.collection, e.by, rfc3339(e.timestamp), int(row["n"]) if row else 0),
        )


# --- the ingestion worker's queue -----------------------------------------------------------


@dataclass(frozen=True)
class KbDocument:
    """A document the worker has to index (`pending`) or take out of the index (`deleting`)."""

    path: str
    bot: str
    collection: str
    sha256: str
    version: int
    content_type: str
    size: int
    state: State
    job: str


def due_documents(read: ReadStore, limit: int) -> list[KbDocument]:
    """Documents waiting for the worker, oldest change first."""
    with read.read() as sql:
        sql.execute(
            "SELECT path, bot, collection, sha256, version, content_type, size, state, job"
            " FROM kb_documents WHERE state IN ('pending', 'deleting')"
            " ORDER BY updated_at, path LIMIT ?",
            (limit,),
        )
        rows = sql.fetchall()
    return [
        KbDocument(
            path=r["path"],
            bot=r["bot"],
            collection=r["collection"],
            sha256=r["sha256"],
            version=int(r["version"]),
            content_type=r["content_type"],
            size=int(r["size"]),
            state=r["state"],
            job=r["job"],
        )
        for r in rows
    ]


def record_indexed(read: ReadStore, doc: KbDocument, chunks: int, error: str | None) -> bool:
    """The outcome of indexing `doc`, kept only if the document is still the one that was
    read (not replaced, deleted or asked for again meanwhile)."""
    at = rfc3339(datetime.now(UTC))
    with read.write(None) as sql:
        sql.execute(
            "UPDATE kb_documents SET state = ?, error = ?, chunks = ?, indexed_at = ?"
            " WHERE path = ? AND version = ? AND sha256 = ? AND state = 'pending' AND job = ?"
            " RETURNING path",
            (
                "error" if error is not None else "indexed",
                error,
                chunks,
                at,
                doc.path,
                doc.version,
                doc.sha256,
                doc.job,
            ),
        )
        return sql.fetchone() is not None


def record_removed(read: ReadStore, doc: KbDocument) -> None:
    """The document's passages are out of the index: it is gone (unless uploaded again)."""
    with read.write(None) as sql:
        sql.execute("DELETE FROM kb_documents WHERE path = ? AND state = 'deleting'", (doc.path,))


def document_paths(read: ReadStore) -> dict[str, State]:
    """Every document the read model knows, with its state (the index may keep passages of
    no other)."""
    with read.read() as sql:
        sql.execute("SELECT path, state FROM kb_documents WHERE state <> 'deleting'")
        return {str(r["path"]): r["state"] for r in sql.fetchall()}


def requeue(read: ReadStore, paths: Sequence[str]) -> None:
    """Documents shown indexed whose passages the index does not have (it was lost or
    replaced): pending again."""
    with read.write(None) as sql:
        for start in range(0, len(paths), 500):
            part = paths[start : start + 500]
            sql.execute(
                f"UPDATE kb_documents SET state = 'pending' WHERE state = 'indexed'"
                f" AND path IN ({', '.join('?' for _ in part)})",
                part,
            )


# --- queries ---------------------------------------------------------------------------------


class FileError(msgspec.Struct):
    path: str
    error: str


class CollectionView(msgspec.Struct):
    name: str
    bot: str
    documents: int
    chunks: int
    last_indexed: str | None
    status: Literal["ready", "indexing"]
    pending: int
    errors: list[FileError]


COLLECTIONS = (
    "(SELECT bot, collection, COUNT(*) AS documents, SUM(chunks) AS chunks,"
    " MAX(indexed_at) AS last_indexed,"
    " SUM(CASE WHEN state IN ('pending', 'deleting') THEN 1 ELSE 0 END) AS pending"
    " FROM kb_documents GROUP BY bot, collection) AS c"
)
MAX_ERRORS = 50  # file errors shown per collection


def _collection(row: dict[str, Any]) -> CollectionView:
    return CollectionView(
        name=row["collection"],
        bot=row["bot"],
        documents=int(row["documents"]),
        chunks=int(row["chunks"] or 0),
        last_indexed=row["last_indexed"],
        status="indexing" if int(row["pending"] or 0) else "ready",
        pending=int(row["pending"] or 0),
        errors=[],
    )


LISTING = Listing(
    _collection,
    "bot, collection, documents, chunks, last_indexed, pending",
    COLLECTIONS,
    "bot, collection",
)


def list_collections(
    read: ReadStore, bot: str | None, limit: int, offset: int
) -> Page[CollectionView]:
    with read.read() as sql:
        found = LISTING.fetch(sql, limit, offset, Where().equal("bot", bot))
        for view in found.data:
            sql.execute(
                "SELECT path, error FROM kb_documents WHERE bot = ? AND collection = ?"
                " AND state = 'error' ORDER BY path LIMIT ?",
                (view.bot, view.name, MAX_ERRORS),
            )
            view.errors = [FileError(r["path"], r["error"] or "") for r in sql.fetchall()]
    return found


class ReindexView(msgspec.Struct):
    id: str
    bot: str | None
    collection: str | None
    status: Literal["queued", "running", "done"]  # queued: not counted yet
    total: int
    done: int
    failed: int
    requested_at: str
    requested_by: str


def queued_job(job_id: str, bot: str | None, collection: str | None, by: str) -> ReindexView:
    """A job saved that the read model does not show yet."""
    at = rfc3339(datetime.now(UTC))
    return ReindexView(job_id, bot, collection, "queued", 0, 0, 0, at, by)


def reindex_job(read: ReadStore, job_id: str) -> ReindexView | None:
    with read.read() as sql:
        sql.execute(
            "SELECT id, bot, collection, requested_by, requested_at, total FROM kb_jobs"
            " WHERE id = ?",
            (job_id,),
        )
        row = sql.fetchone()
        if row is None:
            return None
        sql.execute(
            "SELECT SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending,"
            " SUM(CASE WHEN state = 'error' THEN 1 ELSE 0 END) AS failed"
            " FROM kb_documents WHERE job = ?",
            (job_id,),
        )
        counts = sql.fetchone() or {}
    total = int(row["total"])
    pending = min(total, int(counts.get("pending") or 0))
    return ReindexView(
        id=row["id"],
        bot=row["bot"],
        collection=row["collection"],
        status="running" if pending else "done",
        total=total,
        done=total - pending,
        failed=int(counts.get("failed") or 0),
        requested_at=row["requested_at"],
        requested_by=row["requested_by"],
    )


class KbReadModel:
    """commands.kb.KbDocuments over this read model."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def has_passages(self, bot: str, collections: frozenset[str] | None) -> bool:
        where = Where().equal("bot", bot).add("chunks > 0")
        if collections:
            where.add(
                f"collection IN ({', '.join('?' for _ in collections)})", *sorted(collections)
            )
        with self.read.read() as sql:
            sql.execute(f"SELECT 1 AS x FROM kb_documents{where.sql} LIMIT 1", where.params)
            return sql.fetchone() is not None
