"""Mail commands: send, drafts, delete; receive (SMTP listener, IMAP sync); delivery outcomes
(the relay worker); and the email area of dialog keywords (SEND MAIL).

Who sees what: a mail is in its owner's mailbox only; anyone else asking for it gets
NotFound (404), never a hint that it exists. Bodies, the raw message and attachments go to
the blob store; events name them by digest (domain.mail).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, get_args
from uuid import UUID

import msgspec
from email_validator import EmailNotValidError, validate_email
from msgspec import UNSET, Meta, UnsetType

from commands.fields import Email, InvalidField
from commands.idempotency import Claim, refuse_reused, save_claimed
from commands.mime import ParsedPart, build_message, html_to_text, message_id_for, parse_message
from commands.ports import (
    BlobStore,
    BlobTooLarge,
    ConcurrencyConflict,
    EventStore,
    NotFound,
    Saved,
)
from commands.turn import EVENT_OVERHEAD, TurnContext
from domain.basic import PlatformError
from domain.basic.values import encoded_size
from domain.common import Actor, IfMatch, check_version, rfc3339
from domain.mail import SNIPPET_CHARS, Mail, attachment, received_id
from domain.text import clean, storable

MIB = 1024 * 1024
MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 100
MAX_SUBJECT_CHARS = 998  # one header line (RFC 5322)
MAX_FILENAME_CHARS = 255
# What a received mail's event lists at most (its raw message, in the blob store, has all):
# the first recipients of each header and the first attachments, so the event stays small.
MAX_RECEIVED_PARTS = 500
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A header's text: no line break or other control character (the schema says so too).
ONE_LINE = "^[^\\x00-\\x1f\\x7f]*$"
BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
_BODY_CONTROL = re.compile(r"[\x00]")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}$")
_SHOWN = 60

# --- the request bodies --------------------------------------------------------------------

# Litestar's OpenAPI drops a list item's constraints: Addresses restates them.
EMAIL_PATTERN: str = get_args(Email)[1].pattern
_EMAIL_SCHEMA = {
    "type": "string",
    "maxLength": 254,
    "pattern": EMAIL_PATTERN,
    "description": "An email address",
}
Addresses = Annotated[
    list[Email],
    Meta(
        max_length=MAX_RECIPIENTS,
        description=f"Email addresses (to, cc and bcc hold at most {MAX_RECIPIENTS} in all)",
        extra_json_schema={"extra": {"items": _EMAIL_SCHEMA}},
    ),
]
Subject = Annotated[
    str,
    Meta(
        max_length=MAX_SUBJECT_CHARS,
        pattern=ONE_LINE,
        description="One line of text (no line breaks or control characters) of at most"
        f" {MAX_SUBJECT_CHARS} characters",
        examples=["Meeting Tomorrow"],
    ),
]
Body = Annotated[
    str,
    Meta(description="The body: plain text, or HTML when `html` is true"),
]
# The path of a file in your drive (or a bot package you may read), e.g. `reports/q1.pdf`;
# the drive's path rules apply (commands.drive.normalise_path). No constraint here: inside
# a union, the OpenAPI schema would not show it.
DrivePath = str


class InlineAttachment(msgspec.Struct, forbid_unknown_fields=True):
    """A file given in the request itself."""

    filename: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_FILENAME_CHARS,
            pattern=ONE_LINE,
            description="A file name as the recipient sees it (one line: no control characters)",
            examples=["agenda.pdf"],
        ),
    ]
    content_base64: Annotated[
        str,
        Meta(
            pattern=BASE64,
            description="The file's content in base64 (RFC 4648, padded, no line breaks)",
            examples=["aGVsbG8="],
        ),
    ]
    content_type: Annotated[
        str,
        Meta(
            max_length=255,
            pattern=ONE_LINE,
            description="A media type such as application/pdf (anything else is sent as"
            " application/octet-stream)",
            examples=["application/pdf"],
        ),
    ] = "application/octet-stream"


Attachment = DrivePath | InlineAttachment
Attachments = Annotated[
    list[Attachment],
    Meta(
        max_length=MAX_ATTACHMENTS,
        description="Files to attach: drive paths, or inline files `{filename, content_type,"
        " content_base64}`",
    ),
]
ReplyTo = Annotated[
    UUID,
    Meta(
        description="The id of a mail of yours this one answers: it joins that mail's thread"
        " (In-Reply-To and References are set from it)"
    ),
]


class SendEmail(msgspec.Struct, forbid_unknown_fields=True):
    to: Addresses = []
    cc: Addresses = []
    bcc: Addresses = []
    subject: Subject = ""
    body: Body = ""
    html: bool = False
    attachments: Attachments = []
    in_reply_to: ReplyTo | None = None


class SaveDraft(msgspec.Struct, forbid_unknown_fields=True):
    """A draft: every field optional; addresses are checked when it is sent."""

    to: Addresses = []
    cc: Addresses = []
    bcc: Addresses = []
    subject: Subject = ""
    body: Body = ""
    html: bool = False
    attachments: Attachments = []
    in_reply_to: ReplyTo | None = None


class UpdateDraft(msgspec.Struct, forbid_unknown_fields=True):
    to: Addresses | UnsetType = UNSET
    cc: Addresses | UnsetType = UNSET
    bcc: Addresses | UnsetType = UNSET
    subject: Subject | UnsetType = UNSET
    body: Body | UnsetType = UNSET
    html: bool | UnsetType = UNSET
    attachments: Attachments | UnsetType = UNSET
    in_reply_to: ReplyTo | None | UnsetType = UNSET


# --- what the commands need from outside ---------------------------------------------------


class LocalUsers(Protocol):
    def exists(self, email: str) -> bool:
        """Whether the address is a user of this server (case-insensitive)."""
        ...


class Threads(Protocol):
    def thread_of(self, owner: str, message_ids: Sequence[str]) -> str | None:
        """The thread of the first of these messages that `owner` has (None: none)."""
        ...


class Mailboxes(LocalUsers, Threads, Protocol):
    """What sending and receiving look up in the read model (projections.mail.MailDirectory)."""


class DriveFile(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def content_type(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


class DriveFiles(Protocol):
    def readable(self, actor: Actor, path: str) -> DriveFile | None:
        """The drive file at `path` if there is one; raises Forbidden when the actor may not
        read it."""
        ...


class MissingReference(NotFound):
    """A request names something the sender does not have (a mail to answer, a drive file
    to attach): 400, naming the field (the API's; not the addressed resource's 404)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Outgoing:
    """A mail for the relay: the envelope and the message, byte for byte as recorded."""

    mail_id: UUID
    sender: str  # MAIL FROM (GB_SMTP_FROM, when set, replaces it)
    recipients: list[str]  # RCPT TO: the recipients that are not local users
    message: bytes
    attempts: int  # failed attempts so far


@dataclass
class _Composed:
    """A mail ready to record: checked fields, bodies and attachments in the blob store."""

    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    text: str
    html: str | None
    attachments: list[dict[str, Any]]
    in_reply_to: str | None = None
    references: list[str] | None = None
    thread_id: str | None = None


class MailCommands:
    def __init__(
        self,
        store: EventStore,
        blobs: BlobStore,
        users: Mailboxes,
        *,
        relay: bool,
        max_mail_bytes: int,
        drive: DriveFiles | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.users = users
        self.relay = relay
        self.max_mail_bytes = max_mail_bytes
        self.drive = drive
        self.clock = clock

    # --- sending -------------------------------------------------------------------------

    def send(self, actor: Actor, cmd: SendEmail, claim: Claim | None = None) -> tuple[str, Saved]:
        """Records the mail in the sender's `sent` (and in local recipients' inboxes)."""
        refuse_reused(self.store, claim)
        composed = self._compose(actor, cmd, strict=True)
        mail = Mail.open(actor.email)
        mails = self._send(mail, actor.email, composed, via=None)
        return str(mail.id), save_claimed(self.store, claim, str(mail.id), *mails)

    def save_draft(
        self, actor: Actor, cmd: SaveDraft, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        refuse_reused(self.store, claim)
        composed = self._compose(actor, cmd, strict=False)
        mail = Mail.open(actor.email)
        mail.save_draft(**self._draft_fields(actor.email, composed))
        return str(mail.id), save_claimed(self.store, claim, str(mail.id), mail)

    def update_draft(
        self, actor: Actor, mail_id: UUID, cmd: UpdateDraft, expected: IfMatch | None
    ) -> Saved:
        mail = self._own(actor, mail_id)
        if mail.folder != "drafts":
            raise NotFound(f"draft {mail_id}")
        check_version(expected, mail.version)
        current = self._draft_request(mail)
        given = {
            name: getattr(cmd, name)
            for name in cmd.__struct_fields__
            if getattr(cmd, name) is not UNSET
        }
        changed = msgspec.structs.replace(current, **given)
        composed = self._compose(actor, changed, strict=False, keep=mail.fields, given=given)
        fields = self._draft_fields(actor.email, composed)
        mail.update_draft({k: v for k, v in fields.items() if k != "from_addr"})
        return self.store.save(mail)

    def send_draft(self, actor: Actor, mail_id: UUID, expected: IfMatch | None) -> Saved:
        """Checks the draft as a send would, then sends it: it moves to `sent`."""
        mail = self._own(actor, mail_id)
        if mail.folder != "drafts":
            raise NotFound(f"draft {mail_id}")
        check_version(expected, mail.version)
        fields = mail.fields
        composed = _Composed(
            to=[_address(a, f"to[{i}]") for i, a in enumerate(fields["to"])],
            cc=[_address(a, f"cc[{i}]") for i, a in enumerate(fields["cc"])],
            bcc=[_address(a, f"bcc[{i}]") for i, a in enumerate(fields["bcc"])],
            subject=fields["subject"],
            text=self._text_of(fields.get("text_sha256")),
            html=self._text_of(fields["html_sha256"]) if fields.get("html_sha256") else None,
            attachments=list(fields["attachments"]),
            in_reply_to=fields["in_reply_to"],
            references=list(fields["references"]),
            thread_id=fields["thread_id"],
        )
        _check_recipients(composed)
        return self.store.save(*self._send(mail, actor.email, composed, via=None))

    def delete(self, actor: Actor, mail_id: UUID, expected: IfMatch | None) -> Saved:
        """To the trash; from the trash, gone for good."""
        mail = self._own(actor, mail_id)
        check_version(expected, mail.version)
        mail.delete()
        return self.store.save(mail)

    # --- receiving -----------------------------------------------------------------------

    def receive(self, owner: str, raw: bytes, *, source: str, key: str | None = None) -> str | None:
        """Files a message (RFC 5322 bytes) into `owner`'s inbox; answers its id. With a
        `key`, the same key again records nothing and answers None (exactly once)."""
        if len(raw) > self.max_mail_bytes:
            raise BlobTooLarge(self.max_mail_bytes)
        owner = owner.lower()
        mail_id = received_id(owner, key) if key is not None else uuid.uuid4()
        if key is not None and self._exists(mail_id):
            return None
        parsed = parse_message(raw)
        raw_blob = self.blobs.put(raw)
        text_sha = self.blobs.put(parsed.text.encode()).sha256 if parsed.text else None
        html_sha = self.blobs.put(parsed.html.encode()).sha256 if parsed.html else None
        attachments = [
            attachment(
                part.filename,
                part.content_type,
                self.blobs.put(part.data).sha256,
                len(part.data),
            )
            for part in parsed.attachments[:MAX_RECEIVED_PARTS]
        ]
        references = [r for r in (parsed.in_reply_to, *reversed(parsed.references)) if r]
        mail = Mail.open(owner, id=mail_id)
        mail.receive(
            from_addr=parsed.from_addr.lower(),
            from_name=parsed.from_name,
            to=[a.lower() for a in parsed.to][:MAX_RECIPIENTS],
            cc=[a.lower() for a in parsed.cc][:MAX_RECIPIENTS],
            reply_to=parsed.reply_to,
            subject=parsed.subject,
            snippet=snippet(parsed.text),
            date=parsed.date or rfc3339(self.clock()),
            message_id=parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=parsed.references[-50:],
            thread_id=self.users.thread_of(owner, references) or str(uuid.uuid4()),
            text_sha256=text_sha,
            html_sha256=html_sha,
            raw_sha256=raw_blob.sha256,
            size=len(raw),
            attachments=attachments,
            source=source,
        )
        try:
            self.store.save(mail)
        except ConcurrencyConflict:
            if key is None:
                raise
            return None  # another process received the same key first
        return str(mail_id)

    # --- delivery (the relay worker) ---------------------------------------------------------

    def outgoing(self, mail_id: UUID) -> Outgoing:
        mail = self._mail(mail_id)
        if mail.placed != "sent":
            raise NotFound(str(mail_id))
        fields = mail.fields
        return Outgoing(
            mail_id=mail_id,
            sender=fields["from_addr"],
            recipients=list(fields["relay_to"]),
            message=b"".join(self.blobs.read(fields["raw_sha256"])),
            attempts=mail.attempts,
        )

    def delivered(self, mail_id: UUID, reply: str) -> Saved:
        mail = self._mail(mail_id)
        if not mail.delivered(clean(reply)):
            return Saved(())
        return self.store.save(mail)

    def delivery_failed(
        self, mail_id: UUID, reply: str, *, final: bool, retry_at: datetime | None
    ) -> Saved:
        mail = self._mail(mail_id)
        when = rfc3339(retry_at if retry_at is not None else self.clock())
        if not mail.delivery_failed(clean(reply), final, when):
            return Saved(())
        return self.store.save(mail)

    # --- the email area of dialog keywords ------------------------------------------------

    def dialog_send(self, turn: TurnContext, to: str, subject: str, body: str) -> None:
        """SEND MAIL from a dialog: sent by the session's user (the mail is in their `sent`,
        marked as sent by the bot), saved with the turn."""
        sender = turn.session.user_id.lower()
        addresses = [a.strip() for a in re.split(r"[,;]", str(to)) if a.strip()]
        if not addresses:
            raise PlatformError("SEND MAIL needs a recipient")
        if len(addresses) > MAX_RECIPIENTS:
            raise PlatformError(f"SEND MAIL takes at most {MAX_RECIPIENTS} recipients")
        try:
            recipients = [_address(clean(a), "to") for a in addresses]
        except InvalidField as e:
            raise PlatformError(f"SEND MAIL: {e}") from None
        title = _HEADER_CONTROL.sub(" ", clean(str(subject))).strip()[:MAX_SUBJECT_CHARS]
        text = clean(str(body))
        composed = _Composed(
            to=recipients, cc=[], bcc=[], subject=title, text=text, html=None, attachments=[]
        )
        try:
            mails = self._send(
                Mail.open(sender), sender, composed, via=f"bot:{turn.session.bot_id}"
            )
        except BlobTooLarge:
            raise PlatformError(
                f"SEND MAIL: the mail is larger than {self.max_mail_bytes:,} bytes"
            ) from None
        for mail in mails:
            size = encoded_size(msgspec.to_builtins(mail.fields)) + EVENT_OVERHEAD
            turn.writes.add(mail, size)

    # --- the parts -------------------------------------------------------------------------

    def _send(self, mail: Mail, sender: str, composed: _Composed, via: str | None) -> list[Mail]:
        """`mail` sent (a new one or a draft), and the copies for local recipients."""
        now = self.clock()
        message_id = message_id_for(uuid.uuid4().hex, sender)
        references = list(composed.references or [])
        thread_id = composed.thread_id or str(uuid.uuid4())
        text = composed.text
        html = composed.html
        parts = [
            ParsedPart(a["filename"], a["content_type"], b"".join(self.blobs.read(a["sha256"])))
            for a in composed.attachments
        ]
        raw = build_message(
            from_addr=sender,
            to=composed.to,
            cc=composed.cc,
            subject=composed.subject,
            text=text,
            html=html,
            message_id=message_id,
            date=now,
            in_reply_to=composed.in_reply_to,
            references=references,
            attachments=parts,
        )
        if len(raw) > self.max_mail_bytes:
            raise BlobTooLarge(self.max_mail_bytes)
        raw_sha = self.blobs.put(raw).sha256
        text_sha = self.blobs.put(text.encode()).sha256 if text else None
        html_sha = self.blobs.put(html.encode()).sha256 if html is not None else None
        everyone = _unique([*composed.to, *composed.cc, *composed.bcc])
        local = [a for a in everyone if self.users.exists(a)]
        external = [a for a in everyone if a not in local]
        status = "sent" if not external else ("queued" if self.relay else "not_delivered")
        date = rfc3339(now)
        shown = snippet(text if text else html_to_text(html or ""))
        common: dict[str, Any] = {
            "from_addr": sender,
            "to": composed.to,
            "cc": composed.cc,
            "subject": composed.subject,
            "snippet": shown,
            "date": date,
            "message_id": message_id,
            "in_reply_to": composed.in_reply_to,
            "references": references,
            "text_sha256": text_sha,
            "html_sha256": html_sha,
            "raw_sha256": raw_sha,
            "size": len(raw),
            "attachments": composed.attachments,
        }
        mail.send(
            **common,
            bcc=composed.bcc,
            relay_to=external,
            thread_id=thread_id,
            status=status,
            via=via,
        )
        lookup = [r for r in (composed.in_reply_to, *reversed(references)) if r]
        copies = []
        for owner in local:
            copy = Mail.open(owner)
            copy.receive(
                **common,
                from_name="",
                reply_to=None,
                thread_id=thread_id
                if owner == sender
                else self.users.thread_of(owner, lookup) or str(uuid.uuid4()),
                source="local",
            )
            copies.append(copy)
        return [mail, *copies]

    def _compose(
        self,
        actor: Actor,
        cmd: SendEmail | SaveDraft,
        *,
        strict: bool,
        keep: dict[str, Any] | None = None,
        given: dict[str, Any] | None = None,
    ) -> _Composed:
        """Checks a request's fields and stores its bodies and attachments. `strict`: as a
        send (valid addresses, at least one recipient); else as a draft. `keep`/`given`: a
        draft's current fields and what the update gives (attachments and the answered
        mail are kept unless given)."""
        subject = cmd.subject
        if _HEADER_CONTROL.search(subject) or not storable(subject):
            raise InvalidField(
                "subject", "`subject` must be one line: no line breaks or control characters"
            )
        if _BODY_CONTROL.search(cmd.body) or not storable(cmd.body):
            raise InvalidField(
                "body", "`body` holds U+0000 or a lone surrogate, which no mail can carry"
            )
        lists: dict[str, list[str]] = {}
        for name in ("to", "cc", "bcc"):
            values: list[str] = getattr(cmd, name)
            if strict:
                lists[name] = [_address(v, f"{name}[{i}]") for i, v in enumerate(values)]
            else:
                lists[name] = [v.strip().lower() for v in values]
        if cmd.html:
            text, html = html_to_text(cmd.body), cmd.body
        else:
            text, html = cmd.body, None
        if keep is not None and given is not None and "attachments" not in given:
            attachments = list(keep["attachments"])
        else:
            attachments = self._attachments(actor, cmd.attachments)
        if keep is not None and given is not None and "in_reply_to" not in given:
            answered: tuple[str | None, list[str], str | None] = (
                keep["in_reply_to"],
                list(keep["references"]),
                keep["thread_id"],
            )
        else:
            answered = self._answering(actor, cmd.in_reply_to)
        composed = _Composed(
            to=lists["to"],
            cc=lists["cc"],
            bcc=lists["bcc"],
            subject=subject.strip(),
            text=text,
            html=html,
            attachments=attachments,
            in_reply_to=answered[0],
            references=answered[1],
            thread_id=answered[2],
        )
        if strict:
            _check_recipients(composed)
        size = len(cmd.body.encode()) + sum(int(a["size"]) for a in attachments)
        if size > self.max_mail_bytes:
            raise BlobTooLarge(self.max_mail_bytes)
        return composed

    def _attachments(self, actor: Actor, given: Sequence[Attachment]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        total = 0
        for i, item in enumerate(given):
            field = f"attachments[{i}]"
            if isinstance(item, str):
                record = self._drive_attachment(actor, item, field)
            else:
                record = self._inline_attachment(item, field)
            total += int(record["size"])
            if total > self.max_mail_bytes:
                raise BlobTooLarge(self.max_mail_bytes)
            found.append(record)
        return found

    def _drive_attachment(self, actor: Actor, path: str, field: str) -> dict[str, Any]:
        if self.drive is None:
            raise InvalidField(field, f"`{field}`: attaching drive files is not available")
        if not path or len(path) > 4096 or not storable(path) or _HEADER_CONTROL.search(path):
            raise InvalidField(
                field, f"`{field}`: expected the path of a file in your drive, got {_shown(path)}"
            )
        try:
            found = self.drive.readable(actor, path)
        except InvalidField as e:  # a path the drive refuses
            raise InvalidField(field, f"`{field}`: {e}") from None
        if found is None:
            raise MissingReference(field, f"`{field}`: no file {_shown(path)} in your drive")
        if found.size > self.max_mail_bytes:
            raise BlobTooLarge(self.max_mail_bytes)
        return attachment(found.name, found.content_type, found.sha256, found.size)

    def _inline_attachment(self, item: InlineAttachment, field: str) -> dict[str, Any]:
        name = item.filename.strip()
        if _HEADER_CONTROL.search(name) or not storable(name):
            raise InvalidField(
                f"{field}.filename",
                f"`{field}.filename` must be a name without line breaks or control characters",
            )
        name = name.replace("/", "_").replace("\\", "_") or "attachment"
        content_type = item.content_type.strip().lower()
        if _HEADER_CONTROL.search(content_type) or not storable(content_type):
            raise InvalidField(
                f"{field}.content_type",
                f"`{field}.content_type` must be one line without control characters",
            )
        if not _CONTENT_TYPE.match(content_type):
            content_type = "application/octet-stream"
        if len(item.content_base64) > self.max_mail_bytes * 4 // 3 + 4:
            raise BlobTooLarge(self.max_mail_bytes)
        try:
            data = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidField(
                f"{field}.content_base64", f"`{field}.content_base64` is not valid base64"
            ) from None
        blob = self.blobs.put(data)
        return attachment(name, content_type, blob.sha256, len(data))

    def _answering(
        self, actor: Actor, mail_id: UUID | None
    ) -> tuple[str | None, list[str], str | None]:
        """(In-Reply-To, References, thread) of a reply to the actor's mail `mail_id`."""
        if mail_id is None:
            return None, [], None
        try:
            answered = self._own(actor, mail_id)
        except NotFound:
            raise MissingReference(
                "in_reply_to", f"`in_reply_to`: you have no mail {mail_id}"
            ) from None
        fields = answered.fields
        message_id = fields.get("message_id")
        references = [*fields.get("references", [])][-49:]
        if message_id:
            references.append(message_id)
        return message_id, references, fields.get("thread_id")

    def _draft_fields(self, owner: str, composed: _Composed) -> dict[str, Any]:
        text_sha = self.blobs.put(composed.text.encode()).sha256 if composed.text else None
        html_sha = (
            self.blobs.put(composed.html.encode()).sha256 if composed.html is not None else None
        )
        return {
            "from_addr": owner,
            "to": composed.to,
            "cc": composed.cc,
            "bcc": composed.bcc,
            "subject": composed.subject,
            "snippet": snippet(composed.text),
            "html": composed.html is not None,
            "text_sha256": text_sha,
            "html_sha256": html_sha,
            "attachments": composed.attachments,
            "in_reply_to": composed.in_reply_to,
            "references": composed.references or [],
            "thread_id": composed.thread_id or str(uuid.uuid4()),
        }

    def _draft_request(self, mail: Mail) -> SaveDraft:
        """The draft as the request that would save it (its body read back)."""
        fields = mail.fields
        html = bool(fields["html"])
        body = self._text_of(fields["html_sha256"] if html else fields["text_sha256"])
        return SaveDraft(
            to=list(fields["to"]),
            cc=list(fields["cc"]),
            bcc=list(fields["bcc"]),
            subject=fields["subject"],
            body=body,
            html=html,
        )

    def _text_of(self, sha256: str | None) -> str:
        if not sha256:
            return ""
        return b"".join(self.blobs.read(sha256)).decode("utf-8", "replace")

    def _exists(self, mail_id: UUID) -> bool:
        try:
            self.store.get(mail_id)
        except NotFound:
            return False
        return True

    def _mail(self, mail_id: UUID) -> Mail:
        try:
            mail = self.store.get(mail_id)
        except NotFound:
            raise NotFound(str(mail_id)) from None
        if not isinstance(mail, Mail):
            raise NotFound(str(mail_id))
        return mail

    def _own(self, actor: Actor, mail_id: UUID) -> Mail:
        """The actor's mail; anyone else's is NotFound, as if it did not exist."""
        mail = self._mail(mail_id)
        if mail.owner != actor.email or mail.deleted or not mail.folder:
            raise NotFound(str(mail_id))
        return mail


class DialogMail:
    """The email area of dialog keywords for one turn. SEND MAIL sends from the session's
    user: the mail is in their `sent` (`via`: the bot), saved with the turn, delivered by
    the same worker as any other."""

    def __init__(self, turn: TurnContext, mail: MailCommands) -> None:
        self.turn = turn
        self.mail = mail

    @classmethod
    def provider(cls, mail: MailCommands) -> Callable[[TurnContext], DialogMail]:
        """The KeywordProvider (commands.turn) of the email area over these commands."""
        return lambda turn: cls(turn, mail)

    def send_mail(self, to: str, subject: str, body: str) -> None:
        self.mail.dialog_send(self.turn, to, subject, body)


# --- checks ----------------------------------------------------------------------------------


def snippet(text: str) -> str:
    """The first words of a body, on one line."""
    return clean(" ".join(text.split()))[:SNIPPET_CHARS]


def _address(value: str, field: str) -> str:
    try:
        found = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        raise InvalidField(
            field, f"`{field}`: {_shown(value)} is not a valid email address: {e}"
        ) from None
    return (found.ascii_email or found.normalized).lower()


def _check_recipients(composed: _Composed) -> None:
    everyone = _unique([*composed.to, *composed.cc, *composed.bcc])
    if not everyone:
        raise InvalidField("to", "a mail needs at least one recipient in `to`, `cc` or `bcc`")
    if len(everyone) > MAX_RECIPIENTS:
        raise InvalidField(
            "to", f"a mail goes to at most {MAX_RECIPIENTS} recipients (to, cc and bcc together)"
        )


def _unique(addresses: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def _shown(value: str) -> str:
    text = value if len(value) <= _SHOWN else value[:_SHOWN] + "…"
    return repr(clean(text))
