"""Sessions endpoints: conversations with a bot."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post

from api.deps import Provided
from api.errors import not_found
from api.http import Limit, Offset, Writes, actor_of, claim_of, create, written
from commands.sessions import OpenSession, SendMessage, SessionCommands
from projections.core import Page, ReadStore
from projections.sessions import (
    MessageView,
    SessionDetail,
    SessionFilter,
    SessionList,
    get_message,
    get_session,
    list_messages,
    list_sessions,
)


class SessionsController(Controller):
    path = "/api/sessions"
    tags = ["sessions"]

    @get("/", sync_to_thread=True)
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        status: Literal["active", "closed"] | None = None,
        user_id: str | None = None,
        bot_id: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> SessionList:
        where = SessionFilter(status, user_id.lower() if user_id else None, bot_id)
        return list_sessions(read, actor_of(request), where, limit, offset)

    @post("/", sync_to_thread=True, status_code=201)
    def create_item(
        self,
        request: Request[Any, Any, Any],
        sessions: Provided[SessionCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: OpenSession,
    ) -> Response[SessionDetail]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "sessions",
            lambda: sessions.open(actor, data, claim),
            lambda session_id: f"/api/sessions/{session_id}",
            lambda session_id: get_session(read, session_id, actor),
        )

    @get("/{session_id:uuid}", sync_to_thread=True)
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], session_id: UUID
    ) -> SessionDetail:
        """The session with its latest 50 messages and `message_count`; `/messages` pages."""
        session = get_session(read, str(session_id), actor_of(request))
        if session is None:
            raise not_found("session")
        return session

    @get("/{session_id:uuid}/messages", sync_to_thread=True)
    def messages(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        session_id: UUID,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MessageView]:
        """The session's messages, oldest first, a page at a time."""
        found = list_messages(read, str(session_id), actor_of(request), limit, offset)
        if found is None:
            raise not_found("session")
        return found

    @post("/{session_id:uuid}/close", sync_to_thread=True, status_code=200)
    def close(
        self,
        request: Request[Any, Any, Any],
        sessions: Provided[SessionCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        session_id: UUID,
    ) -> Response[SessionDetail]:
        actor = actor_of(request)
        saved = sessions.close(actor, session_id)
        return written(
            writes,
            saved,
            f"/api/sessions/{session_id}",
            lambda: get_session(read, str(session_id), actor),
        )

    @post("/{session_id:uuid}/messages", sync_to_thread=True, status_code=200)
    def send(
        self,
        request: Request[Any, Any, Any],
        sessions: Provided[SessionCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        session_id: UUID,
        data: SendMessage,
    ) -> Response[MessageView]:
        """Answers as the dialect says: a waiting HEAR, else `start`, else the answer pipeline."""
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "sessions",
            lambda: sessions.send(actor, session_id, data, claim),
            lambda _: f"/api/sessions/{session_id}",
            lambda reply_id: get_message(read, reply_id),
            status=200,
        )
