"""Sessions read model: the sessions list and every session's message history."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import Actor, Forbidden, rfc3339
from projections.core import Listing, Page, Pagination, Projection, ReadStore, Sql, Where, handles

# A session's view embeds its latest messages only; the rest are paged (list_messages).
RECENT_MESSAGES = 50

SESSION_COLUMNS = "id, bot_id, user_id, owner, status, metadata, created_at, last_activity"
MESSAGE_COLUMNS = "id, session_id, seq, role, content, kind, parts, suggestions, timestamp"


class SessionView(msgspec.Struct):
    id: str
    user_id: str
    bot_id: str
    status: str
    created_at: str
    last_activity: str
    metadata: dict[str, Any]


class MessageView(msgspec.Struct):
    id: str
    session_id: str
    role: str
    content: str
    type: str
    timestamp: str
    parts: list[str]
    suggestions: list[dict[str, Any]]


class SessionDetail(msgspec.Struct):
    id: str
    user_id: str
    bot_id: str
    status: str
    created_at: str
    last_activity: str
    metadata: dict[str, Any]
    messages: list[MessageView]  # the latest RECENT_MESSAGES, oldest first
    message_count: int  # all of them: GET /api/sessions/:id/messages pages through them


class SessionList(msgspec.Struct):
    """The reference's shape for this list, with the pagination object added."""

    sessions: list[SessionView]
    total: int
    limit: int
    offset: int
    pagination: Pagination


class SessionFilter(msgspec.Struct, frozen=True):
    status: str | None = None
    user_id: str | None = None
    bot_id: str | None = None


_json = msgspec.json.Encoder()


class SessionsProjection(Projection):
    name = "sessions"
    tables = ("sessions", "session_messages")
    schema = (
        "CREATE TABLE IF NOT EXISTS sessions ("
        " id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, user_id TEXT NOT NULL, owner TEXT NOT NULL,"
        " status TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL,"
        " last_activity TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS sessions_recent ON sessions (last_activity, id)",
        "CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id)",
        "CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner)",
        "CREATE INDEX IF NOT EXISTS sessions_bot ON sessions (bot_id)",
        "CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status)",
        "CREATE TABLE IF NOT EXISTS session_messages ("
        " id TEXT PRIMARY KEY, session_id TEXT NOT NULL, seq BIGINT NOT NULL, role TEXT NOT NULL,"
        " content TEXT NOT NULL, kind TEXT NOT NULL, parts TEXT NOT NULL,"
        " suggestions TEXT NOT NULL, timestamp TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS session_messages_order ON session_messages (session_id, seq)",
    )

    @handles("gbserver.sessions.SessionCreated")
    def created(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
            (
                str(e.originator_id),
                e.bot_id,
                e.user_id,
                e.owner,
                "active",
                _json.encode(e.metadata).decode(),
                at,
                at,
            ),
        )

    @handles("gbserver.sessions.MessageReceived")
    def received(self, sql: Sql, e: Any) -> None:
        self._message(sql, e, e.message_id, "user", e.content, e.kind, [e.content], [])

    @handles("gbserver.sessions.ReplySent")
    def replied(self, sql: Sql, e: Any) -> None:
        content = "\n\n".join(e.parts)
        self._message(sql, e, e.message_id, "assistant", content, "text", e.parts, e.suggestions)

    @handles("gbserver.sessions.SessionClosed")
    def closed(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE sessions SET status = ?, last_activity = ? WHERE id = ?",
            ("closed", rfc3339(e.timestamp), str(e.originator_id)),
        )

    @staticmethod
    def _message(
        sql: Sql,
        e: Any,
        message_id: str,
        role: str,
        content: str,
        kind: str,
        parts: list[str],
        suggestions: list[dict[str, Any]],
    ) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            f"INSERT INTO session_messages ({MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                message_id,
                str(e.originator_id),
                e.originator_version,
                role,
                content,
                kind,
                _json.encode(parts).decode(),
                _json.encode(suggestions).decode(),
                at,
            ),
        )
        sql.execute(
            "UPDATE sessions SET last_activity = ? WHERE id = ?", (at, str(e.originator_id))
        )


def _session(row: dict[str, Any]) -> SessionView:
    return SessionView(
        id=row["id"],
        user_id=row["user_id"],
        bot_id=row["bot_id"],
        status=row["status"],
        created_at=row["created_at"],
        last_activity=row["last_activity"],
        metadata=msgspec.json.decode(row["metadata"]),
    )


def _message(row: dict[str, Any]) -> MessageView:
    return MessageView(
        id=row["id"],
        session_id=row["session_id"],
        role=row["role"],
        content=row["content"],
        type=row["kind"],
        timestamp=row["timestamp"],
        parts=msgspec.json.decode(row["parts"]),
        suggestions=msgspec.json.decode(row["suggestions"]),
    )


SESSION_LISTING = Listing(_session, SESSION_COLUMNS, "sessions", "last_activity DESC, id")
MESSAGE_LISTING = Listing(_message, MESSAGE_COLUMNS, "session_messages", "seq")


def _visible(actor: Actor, row: dict[str, Any]) -> bool:
    return actor.is_admin or actor.email in (row["owner"], row["user_id"])


def _visible_session(sql: Sql, session_id: str, actor: Actor) -> dict[str, Any] | None:
    sql.execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
    row = sql.fetchone()
    if row is not None and not _visible(actor, row):
        raise Forbidden(f"session {session_id} belongs to another user")
    return row


def _count_messages(sql: Sql, session_id: str) -> int:
    sql.execute("SELECT COUNT(*) AS n FROM session_messages WHERE session_id = ?", (session_id,))
    counted = sql.fetchone()
    return int(counted["n"]) if counted else 0


def get_session(store: ReadStore, session_id: str, actor: Actor) -> SessionDetail | None:
    """The session with its latest RECENT_MESSAGES messages (oldest first) and their count."""
    with store.read() as sql:
        row = _visible_session(sql, session_id, actor)
        if row is None:
            return None
        count = _count_messages(sql, session_id)
        sql.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM session_messages WHERE session_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (session_id, RECENT_MESSAGES),
        )
        messages = [_message(m) for m in reversed(sql.fetchall())]
    view = _session(row)
    return SessionDetail(**msgspec.structs.asdict(view), messages=messages, message_count=count)


def list_messages(
    store: ReadStore, session_id: str, actor: Actor, limit: int, offset: int
) -> Page[MessageView] | None:
    """A page of the session's messages, oldest first; None when there is no such session."""
    with store.read() as sql:
        if _visible_session(sql, session_id, actor) is None:
            return None
        return MESSAGE_LISTING.fetch(sql, limit, offset, Where().add("session_id = ?", session_id))


def get_message(store: ReadStore, message_id: str) -> MessageView | None:
    with store.read() as sql:
        sql.execute(f"SELECT {MESSAGE_COLUMNS} FROM session_messages WHERE id = ?", (message_id,))
        row = sql.fetchone()
    return None if row is None else _message(row)


def list_sessions(
    store: ReadStore, actor: Actor, where: SessionFilter, limit: int, offset: int
) -> SessionList:
    condition = Where()
    if not actor.is_admin:
        condition.add("(owner = ? OR user_id = ?)", actor.email, actor.email)
    for column in ("status", "user_id", "bot_id"):
        condition.equal(column, getattr(where, column))
    with store.read() as sql:
        found = SESSION_LISTING.fetch(sql, limit, offset, condition)
    return SessionList(found.data, found.pagination.total, limit, offset, found.pagination)
