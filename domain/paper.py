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

    class PaperCreated(Aggregate.Created):
        """A document was created by `author`, who owns it.

        Version 2 added `author` (see domain.common for how events evolve); version 1
        events, stored before, are read with the owner as their author. Not given (""),
        the author is the owner: whoever creates a document owns it.
        """

        TOPIC = "gbserver.paper.PaperCreated"
        class_version = 2

        owner: str
        title: str
        content: str
        type: str
        author: str = ""

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.author:
                object.__setattr__(self, "author", self.owner)

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["author"] = state["owner"]

    @event(PaperCreated)
    def __init__(self, owner: str, title: str, content: str, type: str, author: str = "") -> None:
        self.owner = owner
        self.title = title
        self.content = content
        self.type = type
        self.deleted = False
        self.last_author = author or owner

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
