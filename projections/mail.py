"""Mail read model: every live mail of every mailbox (one row per mail per owner), their
attachments, and the outbox of mails waiting for the relay.

The outbox (`mail_deliveries`) outlives the mailbox row: a sent mail deleted for good
before the relay took it is still delivered (it was sent), and its blobs stay named.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from domain.common import Actor, rfc3339
from projections.core import Listing, Page, Projection, ReadStore, Row, Sql, Where, handles
from projections.drive import DriveFileView, file_for_read

_json = msgspec.json.Encoder()

COLUMNS = (
    "id, owner, folder, status, from_addr, from_name, to_addrs, cc_addrs, bcc_addrs, reply_to,"
    " subject, snippet, date, at, thread_id, message_id, in_reply_to, refs, attachment_count,"
    " size, is_html, text_sha256, html_sha256, raw_sha256, source, via, attempts,"
    " next_attempt_at, last_reply, search_subject, search_from, updated_at, version"
)
_PLACEHOLDERS = ",".join("?" * len(COLUMNS.split(",")))


class MailSummary(msgspec.Struct):
    """A mail as a folder lists it."""

    id: str
    folder: str
    status: str  # received, draft, queued, sent, failed, not_delivered
    from_: str = msgspec.field(name="from")
    from_name: str = ""
    to: list[str] = []
    cc: list[str] = []
    subject: str = ""
    snippet: str = ""
    date: str = ""
    thread_id: str = ""
    has_attachments: bool = False
    size: int = 0
    version: int = 1


class MailRow(msgspec.Struct):
    """Everything the read model knows of one mail (the API adds bodies from the blobs)."""

    id: str
    owner: str
    folder: str
    status: str
    from_addr: str
    from_name: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    subject: str
    snippet: str
    date: str
    thread_id: str
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    attachment_count: int
    size: int
    is_html: bool
    text_sha256: str | None
    html_sha256: str | None
    raw_sha256: str | None
    source: str | None
    via: str | None
    attempts: int
    next_attempt_at: str | None
    last_reply: str | None
    updated_at: str
    version: int


class AttachmentRow(msgspec.Struct):
    index: int
    filename: str
    content_type: str
    sha256: str
    size: int


def _summary(row: Row) -> MailSummary:
    return MailSummary(
        id=row["id"],
        folder=row["folder"],
        status=row["status"],
        from_=row["from_addr"],
        from_name=row["from_name"],
        to=msgspec.json.decode(row["to_addrs"], type=list[str]),
        cc=msgspec.json.decode(row["cc_addrs"], type=list[str]),
        subject=row["subject"],
        snippet=row["snippet"],
        date=row["date"],
        thread_id=row["thread_id"],
        has_attachments=int(row["attachment_count"]) > 0,
        size=int(row["size"]),
        version=int(row["version"]),
    )


def _row(row: Row) -> MailRow:
    return MailRow(
        id=row["id"],
        owner=row["owner"],
        folder=row["folder"],
        status=row["status"],
        from_addr=row["from_addr"],
        from_name=row["from_name"],
        to=msgspec.json.decode(row["to_addrs"], type=list[str]),
        cc=msgspec.json.decode(row["cc_addrs"], type=list[str]),
        bcc=msgspec.json.decode(row["bcc_addrs"], type=list[str]),
        reply_to=row["reply_to"],
        subject=row["subject"],
        snippet=row["snippet"],
        date=row["date"],
        thread_id=row["thread_id"],
        message_id=row["message_id"],
        in_reply_to=row["in_reply_to"],
        references=msgspec.json.decode(row["refs"], type=list[str]),
        attachment_count=int(row["attachment_count"]),
        size=int(row["size"]),
        is_html=bool(row["is_html"]),
        text_sha256=row["text_sha256"],
        html_sha256=row["html_sha256"],
        raw_sha256=row["raw_sha256"],
        source=row["source"],
        via=row["via"],
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        last_reply=row["last_reply"],
        updated_at=row["updated_at"],
        version=int(row["version"]),
    )


LISTING = Listing(_summary, COLUMNS, "mail_messages", "at DESC, id DESC")


class MailProjection(Projection):
    name = "mail"
    tables = ("mail_messages", "mail_attachments", "mail_deliveries")
    schema = (
        "CREATE TABLE IF NOT EXISTS mail_messages ("
        " id TEXT PRIMARY KEY, owner TEXT NOT NULL, folder TEXT NOT NULL, status TEXT NOT NULL,"
        " from_addr TEXT NOT NULL, from_name TEXT NOT NULL, to_addrs TEXT NOT NULL,"
        " cc_addrs TEXT NOT NULL, bcc_addrs TEXT NOT NULL, reply_to TEXT,"
        " subject TEXT NOT NULL, snippet TEXT NOT NULL, date TEXT NOT NULL, at TEXT NOT NULL,"
        " thread_id TEXT NOT NULL, message_id TEXT, in_reply_to TEXT, refs TEXT NOT NULL,"
        " attachment_count BIGINT NOT NULL, size BIGINT NOT NULL, is_html BIGINT NOT NULL,"
        " text_sha256 TEXT, html_sha256 TEXT, raw_sha256 TEXT, source TEXT, via TEXT,"
        " attempts BIGINT NOT NULL, next_attempt_at TEXT, last_reply TEXT,"
        " search_subject TEXT NOT NULL, search_from TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " version BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS mail_folder ON mail_messages (owner, folder, at, id)",
        "CREATE INDEX IF NOT EXISTS mail_message_id ON mail_messages (owner, message_id)",
        "CREATE TABLE IF NOT EXISTS mail_attachments ("
        " mail_id TEXT NOT NULL, idx BIGINT NOT NULL, filename TEXT NOT NULL,"
        " content_type TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL,"
        " PRIMARY KEY (mail_id, idx))",
        "CREATE TABLE IF NOT EXISTS mail_deliveries ("
        " id TEXT PRIMARY KEY, raw_sha256 TEXT NOT NULL, queued_at TEXT NOT NULL,"
        " next_attempt_at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS mail_deliveries_due"
        " ON mail_deliveries (next_attempt_at, queued_at, id)",
    )

    @handles("gbserver.mail.EmailSent")
    def sent(self, sql: Sql, e: Any) -> None:
        self._place(
            sql,
            e,
            "sent",
            e.status,
            bcc=e.bcc,
            source=None,
            via=e.via,
            is_html=e.html_sha256 is not None,
        )
        if e.status == "queued":
            at = rfc3339(e.timestamp)
            sql.execute(
                "INSERT INTO mail_deliveries (id, raw_sha256, queued_at, next_attempt_at)"
                " VALUES (?,?,?,?) ON CONFLICT (id) DO NOTHING",
                (str(e.originator_id), e.raw_sha256, at, at),
            )

    @handles("gbserver.mail.EmailReceived")
    def received(self, sql: Sql, e: Any) -> None:
        self._place(
            sql,
            e,
            "inbox",
            "received",
            bcc=[],
            source=e.source,
            via=None,
            is_html=e.html_sha256 is not None,
        )

    @handles("gbserver.mail.DraftSaved")
    def draft_saved(self, sql: Sql, e: Any) -> None:
        self._place(sql, e, "drafts", "draft", bcc=e.bcc, source=None, via=None, is_html=e.html)

    @handles("gbserver.mail.DraftUpdated")
    def draft_updated(self, sql: Sql, e: Any) -> None:
        mail_id = str(e.originator_id)
        changes = dict(e.changes)
        columns: dict[str, Any] = {}
        for name, column in (("to", "to_addrs"), ("cc", "cc_addrs"), ("bcc", "bcc_addrs")):
            if name in changes:
                columns[column] = _json.encode(changes[name]).decode()
        if "references" in changes:
            columns["refs"] = _json.encode(changes["references"]).decode()
        if "subject" in changes:
            columns["subject"] = changes["subject"]
            columns["search_subject"] = changes["subject"].lower()
        if "html" in changes:
            columns["is_html"] = 1 if changes["html"] else 0
        for name in ("snippet", "text_sha256", "html_sha256", "in_reply_to", "thread_id"):
            if name in changes:
                columns[name] = changes[name]
        if "attachments" in changes:
            columns["attachment_count"] = len(changes["attachments"])
            columns["size"] = sum(int(a["size"]) for a in changes["attachments"])
            self._attachments(sql, mail_id, changes["attachments"])
        at = rfc3339(e.timestamp)
        columns.update(at=at, updated_at=at, version=e.originator_version)
        names = sorted(columns)
        sql.execute(
            f"UPDATE mail_messages SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
            (*(columns[n] for n in names), mail_id),
        )

    @handles("gbserver.mail.EmailDelivered")
    def delivered(self, sql: Sql, e: Any) -> None:
        mail_id = str(e.originator_id)
        sql.execute(
            "UPDATE mail_messages SET status = 'sent', next_attempt_at = NULL, last_reply = ?,"
            " updated_at = ?, version = ? WHERE id = ?",
            (e.reply, rfc3339(e.timestamp), e.originator_version, mail_id),
        )
        sql.execute("DELETE FROM mail_deliveries WHERE id = ?", (mail_id,))

    @handles("gbserver.mail.EmailDeliveryFailed")
    def delivery_failed(self, sql: Sql, e: Any) -> None:
        mail_id = str(e.originator_id)
        sql.execute(
            "UPDATE mail_messages SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_reply = ?, updated_at = ?, version = ? WHERE id = ?",
            (
                "failed" if e.final else "queued",
                e.attempts,
                None if e.final else e.retry_at,
                e.reply,
                rfc3339(e.timestamp),
                e.originator_version,
                mail_id,
            ),
        )
        if e.final:
            sql.execute("DELETE FROM mail_deliveries WHERE id = ?", (mail_id,))
        else:
            sql.execute(
                "UPDATE mail_deliveries SET next_attempt_at = ? WHERE id = ?",
                (e.retry_at, mail_id),
            )

    @handles("gbserver.mail.EmailTrashed")
    def trashed(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE mail_messages SET folder = 'trash', updated_at = ?, version = ? WHERE id = ?",
            (rfc3339(e.timestamp), e.originator_version, str(e.originator_id)),
        )

    @handles("gbserver.mail.EmailDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        mail_id = str(e.originator_id)
        sql.execute("DELETE FROM mail_messages WHERE id = ?", (mail_id,))
        sql.execute("DELETE FROM mail_attachments WHERE mail_id = ?", (mail_id,))

    def _place(
        self,
        sql: Sql,
        e: Any,
        folder: str,
        status: str,
        *,
        bcc: list[str],
        source: str | None,
        via: str | None,
        is_html: bool,
    ) -> None:
        """The mail's row as its folder event has it (a draft sent is replaced)."""
        mail_id = str(e.originator_id)
        at = rfc3339(e.timestamp)
        subject: str = e.subject
        from_name: str = getattr(e, "from_name", "")
        size = int(getattr(e, "size", 0)) or sum(int(a["size"]) for a in e.attachments)
        sql.execute("DELETE FROM mail_messages WHERE id = ?", (mail_id,))
        sql.execute(
            f"INSERT INTO mail_messages ({COLUMNS}) VALUES ({_PLACEHOLDERS})",
            (
                mail_id,
                e.owner,
                folder,
                status,
                e.from_addr,
                from_name,
                _json.encode(e.to).decode(),
                _json.encode(e.cc).decode(),
                _json.encode(bcc).decode(),
                getattr(e, "reply_to", None),
                subject,
                e.snippet,
                getattr(e, "date", None) or at,
                at,
                e.thread_id,
                getattr(e, "message_id", None),
                e.in_reply_to,
                _json.encode(e.references).decode(),
                len(e.attachments),
                size,
                1 if is_html else 0,
                e.text_sha256,
                e.html_sha256,
                getattr(e, "raw_sha256", None),
                source,
                via,
                0,
                at if status == "queued" else None,
                None,
                subject.lower(),
                f"{from_name} {e.from_addr}".lower(),
                at,
                e.originator_version,
            ),
        )
        self._attachments(sql, mail_id, e.attachments)

    @staticmethod
    def blob_references(sql: Sql) -> Iterator[str]:
        """Every blob the mail read model names, for `gbserver drive gc`: bodies, raw
        messages, attachments, and the outbox's messages (a mail deleted for good before the
        relay took it is still delivered)."""
        sql.execute(
            "SELECT text_sha256 AS sha FROM mail_messages WHERE text_sha256 IS NOT NULL"
            " UNION SELECT html_sha256 FROM mail_messages WHERE html_sha256 IS NOT NULL"
            " UNION SELECT raw_sha256 FROM mail_messages WHERE raw_sha256 IS NOT NULL"
            " UNION SELECT sha256 FROM mail_attachments"
            " UNION SELECT raw_sha256 FROM mail_deliveries"
        )
        for row in sql.fetchall():
            yield str(row["sha"])

    @staticmethod
    def _attachments(sql: Sql, mail_id: str, attachments: Sequence[dict[str, Any]]) -> None:
        sql.execute("DELETE FROM mail_attachments WHERE mail_id = ?", (mail_id,))
        if attachments:
            sql.executemany(
                "INSERT INTO mail_attachments (mail_id, idx, filename, content_type, sha256,"
                " size) VALUES (?,?,?,?,?,?)",
                [
                    (mail_id, i, a["filename"], a["content_type"], a["sha256"], int(a["size"]))
                    for i, a in enumerate(attachments)
                ],
            )


# --- queries ---------------------------------------------------------------------------------


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching it anywhere, its wildcards escaped."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_folder(
    read: ReadStore, owner: str, folder: str, q: str | None, limit: int, offset: int
) -> Page[MailSummary]:
    """The owner's mails in `folder`, newest first; `q` matches subject or sender (any case)."""
    where = Where().add("owner = ?", owner).add("folder = ?", folder)
    if q:
        pattern = _like(q)
        where.add(
            "(search_subject LIKE ? ESCAPE '\\' OR search_from LIKE ? ESCAPE '\\')",
            pattern,
            pattern,
        )
    with read.read() as sql:
        return LISTING.fetch(sql, limit, offset, where)


def get_mail(read: ReadStore, owner: str, mail_id: str) -> MailRow | None:
    """The owner's mail (None: none, or someone else's: no difference is shown)."""
    with read.read() as sql:
        sql.execute(
            f"SELECT {COLUMNS} FROM mail_messages WHERE id = ? AND owner = ?", (mail_id, owner)
        )
        row = sql.fetchone()
    return None if row is None else _row(row)


def mail_attachments(read: ReadStore, mail_id: str) -> list[AttachmentRow]:
    with read.read() as sql:
        sql.execute(
            "SELECT idx, filename, content_type, sha256, size FROM mail_attachments"
            " WHERE mail_id = ? ORDER BY idx",
            (mail_id,),
        )
        rows = sql.fetchall()
    return [
        AttachmentRow(
            index=int(r["idx"]),
            filename=r["filename"],
            content_type=r["content_type"],
            sha256=r["sha256"],
            size=int(r["size"]),
        )
        for r in rows
    ]


def due_deliveries(read: ReadStore, now: str, limit: int) -> list[str]:
    """Ids of queued mails whose next attempt is due at `now` (RFC 3339 UTC), oldest first."""
    with read.read() as sql:
        sql.execute(
            "SELECT id FROM mail_deliveries WHERE next_attempt_at <= ?"
            " ORDER BY next_attempt_at, queued_at, id LIMIT ?",
            (now, limit),
        )
        return [str(r["id"]) for r in sql.fetchall()]


def local_user(read: ReadStore, email: str) -> bool:
    """Whether `email` is a user of this server (one a token was ever issued to), any case."""
    with read.read() as sql:
        sql.execute(
            "SELECT 1 AS found FROM api_tokens WHERE LOWER(user_email) = ? LIMIT 1",
            (email.strip().lower(),),
        )
        return sql.fetchone() is not None


def thread_of(read: ReadStore, owner: str, message_ids: Sequence[str]) -> str | None:
    """The thread of the first of `message_ids` that `owner` has a mail of (None: none)."""
    wanted = list(dict.fromkeys(m for m in message_ids if m))[:100]
    if not wanted:
        return None
    with read.read() as sql:
        sql.execute(
            "SELECT message_id, thread_id FROM mail_messages WHERE owner = ?"
            f" AND message_id IN ({','.join('?' * len(wanted))}) ORDER BY at, id",
            (owner, *wanted),
        )
        found: dict[str, str] = {}
        for row in sql.fetchall():
            found.setdefault(row["message_id"], row["thread_id"])
    return next((found[m] for m in wanted if m in found), None)


def mail_blobs(read: ReadStore) -> set[str]:
    """Every blob the mail read model names (MailProjection.blob_references)."""
    with read.read() as sql:
        return set(MailProjection.blob_references(sql))


class MailDirectory:
    """The read model as sending and receiving see it (commands.mail.Mailboxes)."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def exists(self, email: str) -> bool:
        return local_user(self.read, email)

    def thread_of(self, owner: str, message_ids: Sequence[str]) -> str | None:
        return thread_of(self.read, owner, message_ids)


class DriveAttachments:
    """Drive files as mail attachments (commands.mail.DriveFiles): what the sender may read."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def readable(self, actor: Actor, path: str) -> DriveFileView | None:
        return file_for_read(self.read, actor, path)
