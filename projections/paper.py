"""Paper read model (current documents) and history straight from the event stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

import msgspec

from domain.common import Actor, Forbidden, rfc3339
from domain.paper import EDITABLE, PaperDocument
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles, page

COLUMNS = "id, owner, title, content, type, version, created_at, updated_at, updated_by"


class DocumentView(msgspec.Struct):
    id: str
    title: str
    content: str
    type: str
    owner: str
    version: int
    created_at: str
    updated_at: str
    updated_by: str


LISTING = Listing(DocumentView, COLUMNS, "paper_documents", "updated_at DESC, id")


class Revision(msgspec.Struct):
    version: int
    event: str
    author: str
    timestamp: str
    changed: list[str]


class PaperProjection(Projection):
    name = "paper"
    tables = ("paper_documents",)
    schema = (
        "CREATE TABLE IF NOT EXISTS paper_documents ("
        " id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, content TEXT NOT NULL,"
        " type TEXT NOT NULL, version BIGINT NOT NULL, created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS paper_owner ON paper_documents (owner, updated_at)",
        "CREATE INDEX IF NOT EXISTS paper_updated ON paper_documents (updated_at, id)",
    )

    @handles("gbserver.paper.PaperCreated")
    def created(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            f"INSERT INTO paper_documents ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                str(e.originator_id),
                e.owner,
                e.title,
                e.content,
                e.type,
                e.originator_version,
                at,
                at,
                e.owner,
            ),
        )

    @handles("gbserver.paper.PaperRevised")
    def revised(self, sql: Sql, e: Any) -> None:
        fields = sorted(f for f in e.changes if f in EDITABLE)
        assignments = "".join(f"{f} = ?, " for f in fields)
        sql.execute(
            f"UPDATE paper_documents SET {assignments}version = ?, updated_at = ?, updated_by = ?"
            " WHERE id = ?",
            (
                *(e.changes[f] for f in fields),
                e.originator_version,
                rfc3339(e.timestamp),
                e.author,
                str(e.originator_id),
            ),
        )

    @handles("gbserver.paper.PaperDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        sql.execute("DELETE FROM paper_documents WHERE id = ?", (str(e.originator_id),))


def _check(actor: Actor, owner: str, doc_id: str) -> None:
    if not (actor.is_admin or actor.email == owner):
        raise Forbidden(f"document {doc_id} belongs to another user")


def get_document(store: ReadStore, doc_id: str, actor: Actor) -> DocumentView | None:
    with store.read() as sql:
        sql.execute(f"SELECT {COLUMNS} FROM paper_documents WHERE id = ?", (doc_id,))
        row = sql.fetchone()
    if row is None:
        return None
    _check(actor, row["owner"], doc_id)
    return msgspec.convert(row, DocumentView, strict=False)


def list_documents(
    store: ReadStore, actor: Actor, doc_type: str | None, limit: int, offset: int
) -> Page[DocumentView]:
    condition = Where().equal("type", doc_type)
    if not actor.is_admin:
        condition.add("owner = ?", actor.email)
    with store.read() as sql:
        return LISTING.fetch(sql, limit, offset, condition)


class EventHistory(Protocol):
    def history(self, aggregate_id: UUID) -> Sequence[Any]: ...

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any: ...


_EVENT_NAMES = {"PaperCreated": "created", "PaperRevised": "revised", "PaperDeleted": "deleted"}


def _stream(events: EventHistory, doc_id: UUID, actor: Actor) -> Sequence[Any] | None:
    stream = events.history(doc_id)
    if not stream or type(stream[0]).__name__ != "PaperCreated":
        return None
    _check(actor, stream[0].owner, str(doc_id))
    return stream


def document_history(
    events: EventHistory, doc_id: UUID, actor: Actor, limit: int, offset: int
) -> Page[Revision] | None:
    stream = _stream(events, doc_id, actor)
    if stream is None:
        return None
    revisions = [
        Revision(
            version=e.originator_version,
            event=_EVENT_NAMES[type(e).__name__],
            author=e.author,
            timestamp=rfc3339(e.timestamp),
            changed=sorted(e.changes)
            if hasattr(e, "changes")
            else (list(EDITABLE) if type(e).__name__ == "PaperCreated" else []),
        )
        for e in stream
    ]
    return page(revisions[offset : offset + limit], len(revisions), limit, offset)


def document_at(
    events: EventHistory, doc_id: UUID, version: int, actor: Actor
) -> DocumentView | None:
    """The document as it was at a version; None if it had no such version or was deleted."""
    stream = _stream(events, doc_id, actor)
    if stream is None or not 1 <= version <= len(stream):
        return None
    doc: PaperDocument = events.get(doc_id, version=version)
    if doc.deleted:
        return None
    return DocumentView(
        id=str(doc.id),
        title=doc.title,
        content=doc.content,
        type=doc.type,
        owner=doc.owner,
        version=doc.version,
        created_at=rfc3339(doc.created_on),
        updated_at=rfc3339(doc.modified_on),
        updated_by=doc.last_author,
    )
