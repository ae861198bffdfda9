"""Sessions endpoints: conversations with a bot."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import not_found
from api.examples import ANA, CREATED_AT, IDEMPOTENT, LAGGING, examples
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

SESSION_ID = "49de5dc8-acee-4b25-8cb4-c66534be11fe"
HELLO_AT = "2024-01-10T09:30:14.020000Z"
ANSWERED_AT = "2024-01-10T09:30:14.031000Z"
SESSION = {
    "id": SESSION_ID,
    "user_id": ANA,
    "bot_id": "ana-bot",
    "status": "active",
    "created_at": CREATED_AT,
    "last_activity": CREATED_AT,
    "metadata": {"channel": "web", "language": "en"},
}
HI = {
    "id": "69f99753-f019-4880-b5dd-0a78fed48576",
    "session_id": SESSION_ID,
    "role": "user",
    "content": "Hi",
    "type": "text",
    "timestamp": HELLO_AT,
    "parts": ["Hi"],
    "suggestions": [],
}
REPLY = {
    "id": "31b730d3-15ed-4136-a32f-3458aa59a92f",
    "session_id": SESSION_ID,
    "role": "assistant",
    "content": "Hello! What is your name?",
    "type": "text",
    "timestamp": ANSWERED_AT,
    "parts": ["Hello! What is your name?"],
    "suggestions": [],
}
ONE_PAGE = {"total": 1, "limit": 50, "offset": 0, "has_more": False}

SessionId = Annotated[
    UUID,
    Parameter(
        description="The session's id, as its creation answered (`id`, and the `Location` header)",
        examples=[Example(summary="A session's id", value=SESSION_ID)],
    ),
]
WHO_SEES = (
    "A session is seen by the user who opened it, the user it is for (`user_id`) and admins;"
    " another user's is `403`."
)


class SessionsController(Controller):
    path = "/api/sessions"
    tags = ["Sessions"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listSessions",
        summary="List your sessions",
        description="The sessions you opened or that are for you (an admin: all of them), the"
        " most recently active first, without their messages. The filters combine; `limit`"
        " and `offset` page through them. Besides `data` and `pagination` the answer repeats"
        " the page as `sessions`, `total`, `limit` and `offset` (the reference's shape).",
        response_description="A page of sessions",
        operation_class=examples(
            response={
                "One active session": {
                    "sessions": [{**SESSION, "last_activity": ANSWERED_AT}],
                    "total": 1,
                    "limit": 50,
                    "offset": 0,
                    "pagination": ONE_PAGE,
                }
            }
        ),
    )
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        status: Annotated[
            Literal["active", "closed"] | None,
            Parameter(
                description="Only sessions in this state (`closed` once closed)",
                examples=[Example(summary="Open ones", value="active")],
            ),
        ] = None,
        user_id: Annotated[
            str | None,
            Parameter(
                description="Only sessions for this user's email (compared without case)",
                examples=[Example(summary="Ana's sessions", value=ANA)],
            ),
        ] = None,
        bot_id: Annotated[
            str | None,
            Parameter(
                description="Only sessions with this bot",
                examples=[Example(summary="Ana's bot", value="ana-bot")],
            ),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> SessionList:
        where = SessionFilter(status, user_id.lower() if user_id else None, bot_id)
        return list_sessions(read, actor_of(request), where, limit, offset)

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        operation_id="createSession",
        summary="Start a conversation with a bot",
        description="Opens a session with the bot `bot_id` (default `default`), for you; an"
        " admin may open one for another user (`user_id`; anyone else doing so is `403`)."
        " `metadata` is any JSON object, kept as given. The bot need not have dialogs yet:"
        " the first message runs its deployed `start` dialog if it has one. Answers `201`"
        f" with the session (no messages yet) and its `Location`. {IDEMPOTENT} {LAGGING}",
        response_description="The session opened",
        operation_class=examples(
            request={
                "With Ana's bot, from the web": {
                    "bot_id": "ana-bot",
                    "metadata": {"channel": "web", "language": "en"},
                },
                "With the default bot": {},
            },
            response={"The session opened": {**SESSION, "messages": [], "message_count": 0}},
        ),
    )
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

    @get(
        "/{session_id:uuid}",
        sync_to_thread=True,
        operation_id="getSession",
        summary="Get a session and its latest messages",
        description="The session with its latest 50 messages, oldest first, and"
        " `message_count` (all of them: `GET /api/sessions/{session_id}/messages` pages"
        f" through every one). {WHO_SEES}",
        response_description="The session",
        operation_class=examples(
            response={
                "After the first exchange": {
                    **SESSION,
                    "last_activity": ANSWERED_AT,
                    "messages": [HI, REPLY],
                    "message_count": 2,
                }
            }
        ),
    )
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], session_id: SessionId
    ) -> SessionDetail:
        """The session with its latest 50 messages and `message_count`; `/messages` pages."""
        session = get_session(read, str(session_id), actor_of(request))
        if session is None:
            raise not_found("session")
        return session

    @get(
        "/{session_id:uuid}/messages",
        sync_to_thread=True,
        operation_id="listSessionMessages",
        summary="List a session's messages",
        description="Every message of the session, yours (`role` `user`) and the bot's"
        " (`assistant`), oldest first, a page at a time. A reply's `parts` are the lines its"
        " dialog said (`content` joins them) and `suggestions` the quick answers it offered."
        f" {WHO_SEES}",
        response_description="A page of messages",
        operation_class=examples(
            response={
                "A greeting and its answer": {
                    "data": [HI, REPLY],
                    "pagination": {**ONE_PAGE, "total": 2},
                }
            }
        ),
    )
    def messages(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        session_id: SessionId,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MessageView]:
        """The session's messages, oldest first, a page at a time."""
        found = list_messages(read, str(session_id), actor_of(request), limit, offset)
        if found is None:
            raise not_found("session")
        return found

    @post(
        "/{session_id:uuid}/close",
        sync_to_thread=True,
        status_code=200,
        operation_id="closeSession",
        summary="Close a session",
        description="Ends the conversation: its `status` becomes `closed`, and further"
        " messages (or closing it again) are `409`. It stays readable. Takes no body."
        f" {WHO_SEES} {LAGGING}",
        response_description="The session, closed",
        operation_class=examples(
            response={
                "Closed after one exchange": {
                    **SESSION,
                    "status": "closed",
                    "last_activity": "2024-01-10T09:35:00.500000Z",
                    "messages": [HI, REPLY],
                    "message_count": 2,
                }
            }
        ),
    )
    def close(
        self,
        request: Request[Any, Any, Any],
        sessions: Provided[SessionCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        session_id: SessionId,
    ) -> Response[SessionDetail]:
        actor = actor_of(request)
        saved = sessions.close(actor, session_id)
        return written(
            writes,
            saved,
            f"/api/sessions/{session_id}",
            lambda: get_session(read, str(session_id), actor),
        )

    @post(
        "/{session_id:uuid}/messages",
        sync_to_thread=True,
        status_code=200,
        operation_id="sendMessage",
        summary="Send a message and get the bot's reply",
        description="Records your message and answers with the bot's reply (`200`). Who"
        " answers: a dialog waiting at `HEAR` takes the message; otherwise the session's first"
        " message runs the bot's deployed `start` dialog; otherwise the answer pipeline (the"
        " LLM at `GB_LLM_URL`, or a fixed \"I'm sorry, I don't know the answer to that yet.\""
        " without one). A dialog that fails ends its reply with an apology (the failure is"
        " recorded in the event log)."
        " A closed session is `409`. Dialogs are written in General Bots BASIC"
        f" (docs/dialogs.md). {WHO_SEES} {IDEMPOTENT} {LAGGING}",
        response_description="The bot's reply",
        operation_class=examples(
            request={"A greeting": {"content": "Hi"}},
            response={"The start dialog asks a question": REPLY},
        ),
    )
    def send(
        self,
        request: Request[Any, Any, Any],
        sessions: Provided[SessionCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        session_id: SessionId,
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
