"""Paper commands: create, revise, delete a document."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from commands.fields import Title
from commands.idempotency import Claim, save_new
from commands.ports import MAX_EVENT_BYTES, EventStore, NotFound, Saved
from domain.common import Actor, Forbidden, IfMatch, check_version
from domain.paper import PaperDocument

DocType = Annotated[
    str,
    Meta(
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="A document type of lowercase letters, digits, '_' and '-' (1 to 32,"
        " starting with a letter)",
        examples=["note"],
    ),
]
# Each revision is one event, bounded once encoded (commands.ports.MAX_EVENT_BYTES): content
# beyond that is refused whole with 413 and nothing saved. Larger documents would need the
# blob store (content by reference), which does not exist yet.
Content = Annotated[
    str,
    Meta(
        description=(
            "Markdown. A revision is recorded as one event of at most"
            f" {MAX_EVENT_BYTES // 1024} KiB once encoded"
            " (JSON, UTF-8), with the title and type: larger content is refused with 413."
        )
    ),
]


class CreateDocument(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    content: Content = ""
    type: DocType = "note"


class UpdateDocument(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | UnsetType = UNSET
    content: Content | UnsetType = UNSET
    type: DocType | UnsetType = UNSET


class PaperCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def create(
        self, actor: Actor, cmd: CreateDocument, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        doc = PaperDocument(
            owner=actor.email,
            title=cmd.title.strip(),
            content=cmd.content,
            type=cmd.type,
            author=actor.email,
        )
        return str(doc.id), save_new(self.store, doc, claim)

    def update(
        self, actor: Actor, doc_id: UUID, cmd: UpdateDocument, expected_version: IfMatch | None
    ) -> Saved:
        doc = self._load(actor, doc_id, expected_version)
        fields = {
            name: value.strip() if name == "title" and isinstance(value, str) else value
            for name in cmd.__struct_fields__
            if (value := getattr(cmd, name)) is not UNSET
        }
        doc.revise(actor.email, fields)
        return self.store.save(doc)

    def delete(self, actor: Actor, doc_id: UUID, expected_version: IfMatch | None) -> Saved:
        doc = self._load(actor, doc_id, expected_version)
        doc.delete(actor.email)
        return self.store.save(doc)

    def _load(self, actor: Actor, doc_id: UUID, expected_version: IfMatch | None) -> PaperDocument:
        doc = self.store.get(doc_id)
        if not isinstance(doc, PaperDocument) or doc.deleted:
            raise NotFound(str(doc_id))
        if not (actor.is_admin or doc.may_be_seen_by(actor.email)):
            raise Forbidden(f"document {doc_id} belongs to another user")
        check_version(expected_version, doc.version)
        return doc
