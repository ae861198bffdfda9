"""Sessions: a user's conversation with a bot, message by message, with its dialog's state.

A dialog paused at a HEAR is part of the session's stream (DialogSuspended carries the whole
machine state), so a conversation survives restarts and never re-runs from the top.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.common import Conflict
from domain.text import clean, clean_value

STATUSES = ("active", "closed")


class SessionClosed(Conflict):
    """Messages to a closed session are refused."""


class Session(Aggregate):
    TOPIC = "gbserver.sessions.Session"
    # Sessions that never ran `USE KB` (and snapshots taken before it existed) search them all.
    kb_collections: tuple[str, ...] = ()

    class Created(Aggregate.Created):
        TOPIC = "gbserver.sessions.Session.Created"

    @event("SessionCreated", topic="gbserver.sessions.SessionCreated")
    def __init__(
        self,
        owner: str,
        bot_id: str,
        user_id: str,
        metadata: dict[str, Any],
        id: UUID | None = None,
    ) -> None:
        self.owner = owner
        self.bot_id = bot_id
        self.user_id = user_id
        self.metadata = metadata
        self.status = "active"
        self.started = False  # the bot's `start` dialog ran on the first message
        self.dialog_state: dict[str, Any] | None = None
        self.dialog_sources: dict[str, str] = {}

    def may_be_seen_by(self, email: str) -> bool:
        return email in (self.owner, self.user_id)

    def receive(self, message_id: str, content: str, kind: str) -> None:
        if self.status == "closed":
            raise SessionClosed(f"session {self.id} is closed")
        self._received(message_id=message_id, content=content, kind=kind)

    @event("MessageReceived", topic="gbserver.sessions.MessageReceived")
    def _received(self, message_id: str, content: str, kind: str) -> None:
        pass

    def reply(
        self,
        message_id: str,
        reply_to: str,
        parts: list[str],
        suggestions: list[dict[str, Any]],
        source: str,
    ) -> None:
        """Text a dialog or the LLM made is normalised (domain.text): every store holds it."""
        self._replied(
            message_id=message_id,
            reply_to=reply_to,
            parts=[clean(str(part)) for part in parts],
            suggestions=clean_value(suggestions),
            source=source,
        )

    @event("ReplySent", topic="gbserver.sessions.ReplySent")
    def _replied(
        self,
        message_id: str,
        reply_to: str,
        parts: list[str],
        suggestions: list[dict[str, Any]],
        source: str,
    ) -> None:
        pass

    def dialog_started(self) -> None:
        if not self.started:
            self._dialog_started()

    @event("DialogStarted", topic="gbserver.sessions.DialogStarted")
    def _dialog_started(self) -> None:
        self.started = True

    def suspend(self, state: dict[str, Any], sources: dict[str, str] | None = None) -> None:
        """A HEAR waits: the machine's state is kept, with the deployed dialogs it runs
        (sources: "name@version" -> dialog id, so a dialog deleted and re-created under the
        same name never takes over this conversation)."""
        self._suspended(state=clean_value(state), sources=clean_value(dict(sources or {})))

    @event("DialogSuspended", topic="gbserver.sessions.DialogSuspended")
    def _suspended(self, state: dict[str, Any], sources: dict[str, str] | None = None) -> None:
        self.dialog_state = state
        self.dialog_sources = dict(sources or {})

    @event("DialogEnded", topic="gbserver.sessions.DialogEnded")
    def dialog_ended(self) -> None:
        self.dialog_state = None
        self.dialog_sources = {}

    def dialog_failed(self, dialog: str, line: int, message: str) -> None:
        self._dialog_failed(dialog=clean(dialog), line=line, message=clean(message))

    @event("DialogFailed", topic="gbserver.sessions.DialogFailed")
    def _dialog_failed(self, dialog: str, line: int, message: str) -> None:
        self.dialog_state = None
        self.dialog_sources = {}

    def close(self, actor: str) -> None:
        if self.status == "closed":
            raise SessionClosed(f"session {self.id} is already closed")
        self._closed(actor=actor)

    def use_kb(self, collections: tuple[str, ...]) -> None:
        """The knowledge-base collections the answer pipeline searches (`USE KB`, `CLEAR KB`);
        none: all of the bot's."""
        if tuple(collections) != self.kb_collections:
            self._kb_scoped(collections=list(collections))

    @event("KnowledgeScoped", topic="gbserver.sessions.KnowledgeScoped")
    def _kb_scoped(self, collections: list[str]) -> None:
        self.kb_collections = tuple(collections)

    @event("SessionClosed", topic="gbserver.sessions.SessionClosed")
    def _closed(self, actor: str) -> None:
        self.status = "closed"
        self.dialog_state = None
        self.dialog_sources = {}


class Memory(Aggregate):
    """Values a bot remembers: for the whole bot, or for one of its users."""

    TOPIC = "gbserver.sessions.Memory"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.sessions.Memory.Created"

    @event("MemoryOpened", topic="gbserver.sessions.MemoryOpened")
    def __init__(self, scope: str, id: UUID | None = None) -> None:
        self.scope = scope
        self.values: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self._set(key=clean(str(key)), value=clean_value(value))

    @event("MemorySet", topic="gbserver.sessions.MemorySet")
    def _set(self, key: str, value: Any) -> None:
        self.values[key] = value
