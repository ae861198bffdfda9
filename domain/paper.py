"""Paper: Markdown documents whose every revision stays in the event stream."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.common import Gone

EDITABLE = ("title", "content", "type")


class PaperDocument(Aggregate):
    TOPIC = "gbserver.paper.PaperDocument"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.paper.PaperDocument.Created"

    @event("PaperCreated", topic="gbserver.paper.PaperCreated")
    def __init__(self, owner: str, title: str, content: str, type: str) -> None:
        self.owner = owner
        self.title = title
        self.content = content
        self.type = type
        self.deleted = False
        self.last_author = owner

    def may_be_seen_by(self, email: str) -> bool:
        return email == self.owner

    def revise(self, author: str, fields: dict[str, Any]) -> None:
        self._ensure_alive()
        changes = {k: v for k, v in fields.items() if k in EDITABLE and getattr(self, k) != v}
        if changes:
            self._revised(author=author, changes=changes)

    def delete(self, author: str) -> None:
        self._ensure_alive()
        self._deleted(author=author)

    def _ensure_alive(self) -> None:
        if self.deleted:
            raise Gone(f"document {self.id} was deleted")

    @event("PaperRevised", topic="gbserver.paper.PaperRevised")
    def _revised(self, author: str, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.last_author = author

    @event("PaperDeleted", topic="gbserver.paper.PaperDeleted")
    def _deleted(self, author: str) -> None:
        self.deleted = True
        self.last_author = author
