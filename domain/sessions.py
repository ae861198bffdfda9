"""Sessions: a user's conversation with a bot, message by message, with its dialog's state.

A dialog paused at a HEAR is part of the session's stream (DialogSuspended carries the whole
machine state), so a conversation survives restarts and never re-runs from the top.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.common import Gone

STATUSES = ("active", "closed")


class SessionClosed(Gone):
    """Messages to a closed session are refused."""


class Session(Aggregate):
    TOPIC = "gbserver.sessions.Session"

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
        self._replied(
            message_id=message_id,
            reply_to=reply_to,
            parts=parts,
            suggestions=suggestions,
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

    @event("DialogSuspended", topic="gbserver.sessions.DialogSuspended")
    def suspend(self, state: dict[str, Any]) -> None:
        self.dialog_state = state

    @event("DialogEnded", topic="gbserver.sessions.DialogEnded")
    def dialog_ended(self) -> None:
        self.dialog_state = None

    @event("DialogFailed", topic="gbserver.sessions.DialogFailed")
    def dialog_failed(self, dialog: str, line: int, message: str) -> None:
        self.dialog_state = None

    def close(self, actor: str) -> None:
        if self.status == "closed":
            raise SessionClosed(f"session {self.id} is already closed")
        self._closed(actor=actor)

    @event("SessionClosed", topic="gbserver.sessions.SessionClosed")
    def _closed(self, actor: str) -> None:
        self.status = "closed"
        self.dialog_state = None


class Memory(Aggregate):
    """Values a bot remembers: for the whole bot, or for one of its users."""

    TOPIC = "gbserver.sessions.Memory"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.sessions.Memory.Created"

    @event("MemoryOpened", topic="gbserver.sessions.MemoryOpened")
    def __init__(self, scope: str, id: UUID | None = None) -> None:
        self.scope = scope
        self.values: dict[str, Any] = {}

    @event("MemorySet", topic="gbserver.sessions.MemorySet")
    def set(self, key: str, value: Any) -> None:
        self.values[key] = value
