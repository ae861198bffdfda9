"""Email endpoints: folders, one mail (its text, its HTML sanitised, its attachments), send,
drafts and delete.

A folder's list is a static route of its own (`/api/email/inbox`...): the router prefers a
static segment, so `/api/email/accounts` (IMAP accounts) and these never meet a mail's id.
A mail's id is read by the handlers (not by the router), so that a name that is neither a
folder nor an id is answered with the list of folders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
import nh3
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example, Operation
from litestar.params import Parameter
from litestar.response import Stream

from api.deps import Provided
from api.drive import content_disposition
from api.errors import ApiError, ErrorEnvelope, not_found
from api.examples import ANA, BEA, CONDITIONAL, CREATED_AT, IDEMPOTENT, LAGGING, examples
from api.http import (
    Limit,
    Offset,
    Writes,
    actor_of,
    claim_of,
    create,
    etag,
    expected_version,
    written,
)
from commands.mail import MailCommands, MissingReference, SaveDraft, SendEmail, UpdateDraft
from commands.ports import BlobMissing, BlobTooLarge
from domain.common import Actor
from domain.mail import FOLDERS
from projections.core import Page, ReadStore
from projections.mail import MailRow, MailSummary, get_mail, list_folder, mail_attachments

PREFIX = "/api/email"
T = TypeVar("T")

MAIL_ID = "5b0e7c1a-9d2f-4e3b-8a6c-2f1d0e9b7a54"
THREAD_ID = "0c8f3e6a-1b2d-4c5e-9f7a-3d2e1c0b9a87"
SENT_AT = "2024-01-10T09:30:12.481516Z"
SUMMARY = {
    "id": MAIL_ID,
    "folder": "sent",
    "status": "not_delivered",
    "from": ANA,
    "from_name": "",
    "to": ["recipient@example.com"],
    "cc": [],
    "subject": "Meeting Tomorrow",
    "snippet": "Hi, let's meet at 3pm.",
    "date": SENT_AT,
    "thread_id": THREAD_ID,
    "has_attachments": False,
    "size": 512,
    "version": 2,
}
MAIL = {
    **{k: v for k, v in SUMMARY.items() if k != "has_attachments"},
    "bcc": [],
    "reply_to": None,
    "message_id": "<3f2a9c1e8b7d4e6f@example.com>",
    "in_reply_to": None,
    "references": [],
    "text": "Hi, let's meet at 3pm.",
    "html": None,
    "attachments": [],
    "source": None,
    "via": None,
    "attempts": 0,
    "next_attempt_at": None,
    "last_reply": None,
    "updated_at": CREATED_AT,
}
RECEIVED = {
    **MAIL,
    "folder": "inbox",
    "status": "received",
    "from": BEA,
    "from_name": "Bea",
    "to": [ANA],
    "subject": "Re: Meeting Tomorrow",
    "snippet": "3pm works. See you there!",
    "text": "3pm works. See you there!",
    "html": "<p>3pm works. <b>See you there!</b></p>",
    "message_id": "<7a1c@example.com>",
    "in_reply_to": MAIL["message_id"],
    "references": [MAIL["message_id"]],
    "source": "smtp",
    "size": 48900,
    "attachments": [
        {
            "index": 0,
            "filename": "agenda.pdf",
            "content_type": "application/pdf",
            "size": 48213,
            "url": f"{PREFIX}/{MAIL_ID}/attachments/0",
        }
    ],
}
DRAFT = {
    **MAIL,
    "folder": "drafts",
    "status": "draft",
    "message_id": None,
    "size": 0,
    "version": 2,
}
INBOX_SUMMARY = {**{k: RECEIVED[k] for k in SUMMARY if k in RECEIVED}, "has_attachments": True}
PAGE = {
    "data": [INBOX_SUMMARY],
    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
}
SENT_PAGE = {
    "data": [SUMMARY],
    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
}
SEND = {
    "to": ["recipient@example.com"],
    "cc": [],
    "bcc": [],
    "subject": "Meeting Tomorrow",
    "body": "Hi, let's meet at 3pm.",
    "html": False,
    "attachments": [],
}

MailId = Annotated[
    str,
    Parameter(
        description="The mail's id, as sending or saving it answered (`id`, and the"
        " `Location` header); a UUID",
        examples=[Example(summary="A mail's id", value=MAIL_ID)],
    ),
]
DraftId = Annotated[
    UUID,
    Parameter(
        description="The draft's id, as saving it answered (`id`, and the `Location` header)",
        examples=[Example(summary="A draft's id", value=MAIL_ID)],
    ),
]
Query = Annotated[
    str | None,
    Parameter(
        max_length=200,
        description="Only mails whose subject or sender (name or address) holds this text,"
        " in any case",
        examples=[Example(summary="Mails about the meeting", value="meeting")],
    ),
]
Index = Annotated[
    int,
    Parameter(
        ge=0,
        le=1000,
        description="The attachment's position in the mail's `attachments` (from 0)",
        examples=[Example(summary="The first attachment", value=0)],
    ),
]
WHOSE = (
    "A mail is its owner's alone: another user's mail (or one that does not exist) is `404`,"
    " whoever asks, admins included."
)
STATUSES = (
    "`status` is `received` (inbox), `draft`, or, for a sent mail: `queued` (waiting for the"
    " relay, `GB_SMTP_HOST`), `sent` (the relay took it, or every recipient is a user of"
    " this server), `failed` (refused for good; `last_reply` says why) or `not_delivered`"
    " (no relay is configured; recipients who are users of this server have it all the"
    " same)."
)


class AttachmentView(msgspec.Struct):
    index: int
    filename: str
    content_type: str
    size: int
    url: str  # where to download it


class MailView(msgspec.Struct):
    """A mail with its text, its HTML (sanitised) and its attachments."""

    id: str
    folder: str
    status: str
    from_: str = msgspec.field(name="from")
    from_name: str = ""
    to: list[str] = []
    cc: list[str] = []
    bcc: list[str] = []  # the sender's own copy only
    reply_to: str | None = None
    subject: str = ""
    snippet: str = ""
    date: str = ""
    thread_id: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = []
    text: str = ""
    html: str | None = None
    attachments: list[AttachmentView] = []
    size: int = 0
    source: str | None = None
    via: str | None = None
    attempts: int = 0
    next_attempt_at: str | None = None
    last_reply: str | None = None
    updated_at: str = ""
    version: int = 1


def sanitise(html: str) -> str:
    """HTML safe to show: no scripts, no event handlers, no javascript: URLs (nh3)."""
    return nh3.clean(html)


def _body(mail: MailCommands, sha256: str | None) -> str:
    if not sha256:
        return ""
    try:
        return b"".join(mail.blobs.read(sha256)).decode("utf-8", "replace")
    except BlobMissing:
        return ""


def _view(read: ReadStore, mail: MailCommands, owner: str, mail_id: str) -> MailView | None:
    row = get_mail(read, owner, mail_id)
    return None if row is None else _detail(read, mail, row)


def _detail(read: ReadStore, mail: MailCommands, row: MailRow) -> MailView:
    html = _body(mail, row.html_sha256) if row.html_sha256 else None
    return MailView(
        id=row.id,
        folder=row.folder,
        status=row.status,
        from_=row.from_addr,
        from_name=row.from_name,
        to=row.to,
        cc=row.cc,
        bcc=row.bcc,
        reply_to=row.reply_to,
        subject=row.subject,
        snippet=row.snippet,
        date=row.date,
        thread_id=row.thread_id,
        message_id=row.message_id,
        in_reply_to=row.in_reply_to,
        references=row.references,
        text=_body(mail, row.text_sha256),
        html=sanitise(html) if html is not None else None,
        attachments=[
            AttachmentView(
                index=a.index,
                filename=a.filename,
                content_type=a.content_type,
                size=a.size,
                url=f"{PREFIX}/{row.id}/attachments/{a.index}",
            )
            for a in (mail_attachments(read, row.id) if row.attachment_count else [])
        ],
        size=row.size,
        source=row.source,
        via=row.via,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_reply=row.last_reply,
        updated_at=row.updated_at,
        version=row.version,
    )


def _mail_uuid(value: str, folder_hint: bool = False) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        shown = value if len(value) <= 60 else value[:60] + "…"
        if folder_hint:
            raise ApiError(
                404,
                f"no folder {shown!r}: the folders are {', '.join(FOLDERS)}"
                " (a mail is named by its id, a UUID)",
                [{"field": "mail_id", "source": "path", "message": "not a folder or a mail id"}],
            ) from None
        raise ApiError(
            404,
            f"mail {shown} is not a valid id (expected a UUID such as {MAIL_ID})",
            [{"field": "mail_id", "source": "path", "message": "not a mail id"}],
        ) from None


def _sized(mail: MailCommands, action: Callable[[], T]) -> T:
    """Runs a write; a mail over GB_MAX_MAIL_MB is 413, a mail to answer or a drive file
    to attach that the sender does not have is 400 naming the field (the body is wrong; the
    resource the request addresses may well exist: 404 would say it does not)."""
    try:
        return action()
    except MissingReference as e:
        raise ApiError(
            400, e.message, [{"field": e.field, "source": "body", "message": e.message}]
        ) from None
    except BlobTooLarge:
        limit = mail.max_mail_bytes
        raise ApiError(
            413,
            f"the mail is larger than {limit // (1024 * 1024):,} MiB (GB_MAX_MAIL_MB)",
            [{"limit": limit}],
        ) from None


def _listing(
    read: ReadStore, actor: Actor, folder: str, q: str | None, limit: int, offset: int
) -> Page[MailSummary]:
    return list_folder(read, actor.email, folder, q or None, limit, offset)


def _list_docs(folder: str, what: str) -> dict[str, Any]:
    return {
        "sync_to_thread": True,
        "summary": f"List {what}",
        "description": f"Your mails in `{folder}`, newest first (by when they arrived, were"
        " sent, saved or last changed). `q` keeps those whose subject or sender holds the"
        " text; `limit` and `offset` page through them, and `pagination.total` counts all"
        f" that match. {STATUSES}",
        "response_description": f"A page of {what}",
        "operation_class": examples(
            response={
                "One mail": PAGE if folder in ("inbox", "trash") else SENT_PAGE,
            }
        ),
    }


_BAD_SEND = ResponseSpec(
    ErrorEnvelope,
    description="A field is missing or invalid: an address, a line break in the subject, a"
    " mail to answer (`in_reply_to`) or a drive file to attach that you do not have...",
    examples=[
        Example(
            summary="An address that is not one",
            value={
                "error": {
                    "code": "BAD_REQUEST",
                    "message": "`to[0]`: 'bea@-example.com' is not a valid email address:"
                    " An email address cannot have a hyphen immediately after the @-sign.",
                    "details": [
                        {
                            "field": "to[0]",
                            "message": "`to[0]`: 'bea@-example.com' is not a valid email"
                            " address: An email address cannot have a hyphen immediately"
                            " after the @-sign.",
                        }
                    ],
                }
            },
        ),
        Example(
            summary="No such file in your drive",
            value={
                "error": {
                    "code": "BAD_REQUEST",
                    "message": "`attachments[0]`: no file 'reports/q9.pdf' in your drive",
                    "details": [
                        {
                            "field": "attachments[0]",
                            "source": "body",
                            "message": "`attachments[0]`: no file 'reports/q9.pdf' in your drive",
                        }
                    ],
                }
            },
        ),
    ],
)
_SEND_RULES = (
    "Addresses are checked (a syntax check, no DNS); `to`, `cc` and `bcc` hold at least one"
    " and at most 100 recipients together, and `bcc` shows in your copy only. `subject` is"
    " one line: a line break or a control character in it (or in an attachment's name) is"
    " `400`, naming the field. `body` is text, or HTML with `html: true` (a text version is"
    " made from it). `attachments` are paths of files in your drive (or a bot package you"
    " may read), or inline files `{filename, content_type, content_base64}`; the whole mail"
    " may be at most `GB_MAX_MAIL_MB` (25 MiB by default; larger is `413`). `in_reply_to`,"
    " the id of a mail of yours, makes it a reply in that mail's thread. A mail to answer or"
    " a drive file that you do not have is `400`, naming the field. Users of this"
    " server among the recipients find it in their `inbox` at once; the others get it"
    f" through the relay. {STATUSES}"
)
_ATTACHMENT_HEADERS = {
    name: {"description": why, "schema": {"type": "string"}}
    for name, why in (
        ("Content-Disposition", "attachment, with the file's name (RFC 6266 filename*)"),
        ("ETag", "The content's SHA-256, quoted"),
    )
}


def _download_docs(base: type[Operation]) -> type[Operation]:
    def to_schema(self: Operation) -> dict[str, Any]:
        rendered: dict[str, Any] = base.to_schema(self)
        ok = rendered.setdefault("responses", {}).setdefault("200", {})
        ok["description"] = "The attachment's bytes, with its media type"
        ok["content"] = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        ok["headers"] = _ATTACHMENT_HEADERS
        return rendered

    return type("Documented", (base,), {"to_schema": to_schema})


class EmailController(Controller):
    path = PREFIX
    tags = ["Email"]

    @get("/", operation_id="listEmail", **_list_docs("inbox", "your inbox"))
    def list_inbox(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        q: Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MailSummary]:
        return _listing(read, actor_of(request), "inbox", q, limit, offset)

    @get("/inbox", operation_id="listInboxEmail", **_list_docs("inbox", "the inbox"))
    def list_inbox_folder(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        q: Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MailSummary]:
        return _listing(read, actor_of(request), "inbox", q, limit, offset)

    @get("/sent", operation_id="listSentEmail", **_list_docs("sent", "sent mail"))
    def list_sent(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        q: Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MailSummary]:
        return _listing(read, actor_of(request), "sent", q, limit, offset)

    @get("/drafts", operation_id="listDraftEmail", **_list_docs("drafts", "your drafts"))
    def list_drafts(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        q: Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MailSummary]:
        return _listing(read, actor_of(request), "drafts", q, limit, offset)

    @get("/trash", operation_id="listTrashEmail", **_list_docs("trash", "the trash"))
    def list_trash(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        q: Query = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[MailSummary]:
        return _listing(read, actor_of(request), "trash", q, limit, offset)

    @get(
        "/{mail_id:str}",
        sync_to_thread=True,
        operation_id="getEmail",
        summary="Get a mail",
        description="The mail with its text, its HTML (sanitised: no scripts, event handlers"
        " or javascript: links; `null` for a text-only mail) and its attachments, each with"
        " the `url` that downloads it. Its version is the `ETag`. A name that is neither a"
        f" folder ({', '.join(FOLDERS)}) nor a mail's id is `404`. {WHOSE} {STATUSES}",
        response_description="The mail",
        operation_class=examples(response={"A reply with an attachment": RECEIVED}),
    )
    def get_item(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        mail: Provided[MailCommands],
        mail_id: MailId,
    ) -> Response[MailView]:
        actor = actor_of(request)
        found = _view(read, mail, actor.email, str(_mail_uuid(mail_id, folder_hint=True)))
        if found is None:
            raise not_found(f"mail {mail_id}")
        return Response(found, headers=etag(found.version))

    @get(
        "/{mail_id:str}/attachments/{index:int}",
        sync_to_thread=True,
        operation_id="downloadEmailAttachment",
        summary="Download an attachment",
        description="The attachment's bytes, streamed, with its media type, its name in"
        " `Content-Disposition` (RFC 6266, UTF-8 names as `filename*`) and its SHA-256 as"
        f" `ETag`. {WHOSE} An index past the last attachment is `404`.",
        response_description="The attachment",
        operation_class=_download_docs(examples()),
    )
    def download_attachment(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        mail: Provided[MailCommands],
        mail_id: MailId,
        index: Index,
    ) -> Stream:
        actor = actor_of(request)
        key = str(_mail_uuid(mail_id))
        row = get_mail(read, actor.email, key)
        if row is None:
            raise not_found(f"mail {mail_id}")
        found = [a for a in mail_attachments(read, key) if a.index == index]
        if not found:
            raise ApiError(404, f"mail {mail_id} has no attachment {index}")
        item = found[0]
        try:
            chunks: Iterator[bytes] = mail.blobs.read(item.sha256) if item.size else iter(())
        except BlobMissing:
            raise ApiError(404, "the attachment's content is missing from the store") from None
        return Stream(
            chunks,
            media_type=item.content_type,
            headers={
                "Content-Disposition": content_disposition(item.filename),
                "Content-Length": str(item.size),
                "ETag": f'"{item.sha256}"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-cache",
            },
        )

    @delete(
        "/{mail_id:str}",
        sync_to_thread=True,
        status_code=204,
        operation_id="deleteEmail",
        summary="Delete a mail",
        description="Moves the mail to `trash`; a mail already in `trash` is deleted for good"
        " (it leaves every list, its `GET` is `404`; its history stays in the event log)."
        f" Answers `204`. {CONDITIONAL.format(thing='mail')} {WHOSE} {LAGGING}",
        response_description="Moved to the trash, or deleted",
    )
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        mail: Provided[MailCommands],
        writes: Provided[Writes],
        mail_id: MailId,
    ) -> Response[None]:
        actor = actor_of(request)
        key = _mail_uuid(mail_id)
        saved = mail.delete(actor, key, expected_version(request))
        return written(writes, saved, f"{PREFIX}/{key}", lambda: None)

    @post(
        "/send",
        sync_to_thread=True,
        status_code=201,
        operation_id="sendEmail",
        summary="Send a mail",
        description="Sends a mail from you: it is in your `sent` folder, answered with `201`,"
        f" its `Location` and its `ETag`. {_SEND_RULES} {IDEMPOTENT} {LAGGING}",
        response_description="The mail sent (your copy)",
        operation_class=examples(
            request={
                "The reference's example": SEND,
                "An HTML mail with a file attached inline": {
                    "to": [BEA],
                    "subject": "Agenda",
                    "body": "<p>The <b>agenda</b> is attached.</p>",
                    "html": True,
                    "attachments": [
                        {
                            "filename": "agenda.txt",
                            "content_type": "text/plain",
                            "content_base64": "MS4gQnVkZ2V0CjIuIFBsYW5zCg==",
                        }
                    ],
                },
            },
            response={"Sent, no relay configured": MAIL},
        ),
        responses={400: _BAD_SEND},
    )
    def send(
        self,
        request: Request[Any, Any, Any],
        mail: Provided[MailCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: SendEmail,
    ) -> Response[MailView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "mail",
            lambda: _sized(mail, lambda: mail.send(actor, data, claim)),
            lambda mail_id: f"{PREFIX}/{mail_id}",
            lambda mail_id: _view(read, mail, actor.email, mail_id),
        )

    @post(
        "/drafts",
        sync_to_thread=True,
        status_code=201,
        operation_id="saveDraft",
        summary="Save a draft",
        description="Saves a mail to send later, in your `drafts`. Every field is optional and"
        " addresses are only checked when it is sent; the subject must still be one line and"
        " attachments are stored now (a drive file as it is now). Answers `201` with the"
        f" draft, its `Location` and its `ETag`. {IDEMPOTENT} {LAGGING}",
        response_description="The draft saved",
        operation_class=examples(
            request={
                "A draft to finish later": {"to": [BEA], "subject": "Quarterly numbers"},
                "Just a note to self": {"body": "Remember to attach the Q1 report."},
            },
            response={"The draft": DRAFT},
        ),
        responses={400: _BAD_SEND},
    )
    def save_draft(
        self,
        request: Request[Any, Any, Any],
        mail: Provided[MailCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: SaveDraft,
    ) -> Response[MailView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "mail",
            lambda: _sized(mail, lambda: mail.save_draft(actor, data, claim)),
            lambda mail_id: f"{PREFIX}/{mail_id}",
            lambda mail_id: _view(read, mail, actor.email, mail_id),
        )

    @put(
        "/drafts/{mail_id:uuid}",
        sync_to_thread=True,
        operation_id="updateDraft",
        summary="Change a draft",
        description="Changes the fields the body names and keeps the others (`attachments`,"
        " when given, replaces the list). Answers with the draft and its new `ETag`."
        f" {CONDITIONAL.format(thing='draft')} A mail that is not one of your drafts is"
        f" `404`. {LAGGING}",
        response_description="The draft as changed",
        operation_class=examples(
            request={
                "Add a recipient and the text": {
                    "to": [BEA, "carl@example.com"],
                    "body": "Here are the numbers.",
                },
                "Make it HTML": {"body": "<p>Here are the <b>numbers</b>.</p>", "html": True},
            },
            response={"The draft, changed": DRAFT},
        ),
        responses={400: _BAD_SEND},
    )
    def update_draft(
        self,
        request: Request[Any, Any, Any],
        mail: Provided[MailCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        mail_id: DraftId,
        data: UpdateDraft,
    ) -> Response[MailView]:
        actor = actor_of(request)
        saved = _sized(
            mail, lambda: mail.update_draft(actor, mail_id, data, expected_version(request))
        )
        return written(
            writes,
            saved,
            f"{PREFIX}/{mail_id}",
            lambda: _view(read, mail, actor.email, str(mail_id)),
        )

    @post(
        "/drafts/{mail_id:uuid}/send",
        sync_to_thread=True,
        status_code=200,
        operation_id="sendDraft",
        summary="Send a draft",
        description="Sends the draft as `POST /api/email/send` would send it (the same checks:"
        " a draft without a valid recipient is `400` and stays a draft); it moves to `sent`."
        f" Answers with the mail. {CONDITIONAL.format(thing='draft')} {LAGGING}",
        response_description="The mail sent",
        operation_class=examples(response={"Sent, no relay configured": MAIL}),
        responses={400: _BAD_SEND},
    )
    def send_draft(
        self,
        request: Request[Any, Any, Any],
        mail: Provided[MailCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        mail_id: DraftId,
    ) -> Response[MailView]:
        actor = actor_of(request)
        saved = _sized(mail, lambda: mail.send_draft(actor, mail_id, expected_version(request)))
        return written(
            writes,
            saved,
            f"{PREFIX}/{mail_id}",
            lambda: _view(read, mail, actor.email, str(mail_id)),
        )
