"""Mail: one aggregate per message per mailbox owner.

A message sent to two local users is three aggregates: the sender's copy in `sent` and one
in each recipient's `inbox`. Events carry metadata and a short snippet only: the bodies,
the raw RFC 5322 message and the attachments live in the blob store (commands.ports
.BlobStore), named by their SHA-256, so an event stays small whatever the mail's size.

A mail's stream begins with `MailCreated` (its owner) and, in the same save, the event that
puts it in a folder: `EmailSent` (sent), `EmailReceived` (inbox) or `DraftSaved` (drafts).
A draft changes with `DraftUpdated` and becomes sent with `EmailSent`. Delivery to the
relay ends in `EmailDelivered` or, after retries, a final `EmailDeliveryFailed`. Deleting
moves a mail to `trash` (`EmailTrashed`); deleting it from the trash ends it for good
(`EmailDeleted`: the read model drops it, the log keeps its history).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.common import Conflict, Gone

FOLDERS = ("inbox", "sent", "drafts", "trash")
# A sent mail's status: waiting for the relay, accepted by it, refused for good, or kept
# here because no relay is configured (local recipients have it all the same).
STATUSES = ("queued", "sent", "failed", "not_delivered")
SNIPPET_CHARS = 200
MAX_REPLY_CHARS = 2000
_RECEIVED = UUID("0d5b7c3e-58a1-4f0e-9b6d-7a2c4e1f8b93")


def received_id(owner: str, key: str) -> UUID:
    """The id of the mail received into `owner`'s inbox under `key` (exactly once)."""
    return uuid5(_RECEIVED, f"{owner}\n{key}")


def attachment(filename: str, content_type: str, sha256: str, size: int) -> dict[str, Any]:
    """An attachment as events carry it: its content is the blob `sha256`."""
    return {"filename": filename, "content_type": content_type, "sha256": sha256, "size": size}


class Mail(Aggregate):
    TOPIC = "gbserver.mail.Mail"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.mail.Mail.Created"

    class MailCreated(Aggregate.Created):
        """The mail's stream begins: whose mailbox it is in (its folder event follows)."""

        TOPIC = "gbserver.mail.MailCreated"

        owner: str

    class EmailSent(Aggregate.Event):
        """Sent by its owner: in `sent`, with the status its delivery starts at. `relay_to`
        are the recipients the relay delivers to (the ones not local); `raw_sha256` the
        message as built (RFC 5322), which the relay gets byte for byte."""

        TOPIC = "gbserver.mail.EmailSent"

        owner: str
        from_addr: str
        to: list[str]
        cc: list[str]
        bcc: list[str]
        relay_to: list[str]
        subject: str
        snippet: str
        date: str
        message_id: str
        in_reply_to: str | None
        references: list[str]
        thread_id: str
        text_sha256: str | None
        html_sha256: str | None
        raw_sha256: str
        size: int
        attachments: list[dict[str, Any]]
        status: str
        via: str | None  # "bot:<id>" when a dialog sent it on its owner's behalf

        def apply(self, mail: Any) -> None:
            mail.folder = mail.placed = "sent"
            mail.status = self.status
            mail.fields = _fields(self)

    class EmailReceived(Aggregate.Event):
        """Arrived in its owner's inbox: over SMTP, from an IMAP account, or from a local
        user's send (`source`: smtp, imap, local)."""

        TOPIC = "gbserver.mail.EmailReceived"

        owner: str
        from_addr: str
        from_name: str
        to: list[str]
        cc: list[str]
        reply_to: str | None
        subject: str
        snippet: str
        date: str
        message_id: str | None
        in_reply_to: str | None
        references: list[str]
        thread_id: str
        text_sha256: str | None
        html_sha256: str | None
        raw_sha256: str | None
        size: int
        attachments: list[dict[str, Any]]
        source: str

        def apply(self, mail: Any) -> None:
            mail.folder = mail.placed = "inbox"
            mail.status = "received"
            mail.fields = _fields(self)

    class DraftSaved(Aggregate.Event):
        """A draft: any field may still be empty or not yet a valid address."""

        TOPIC = "gbserver.mail.DraftSaved"

        owner: str
        from_addr: str
        to: list[str]
        cc: list[str]
        bcc: list[str]
        subject: str
        snippet: str
        html: bool
        text_sha256: str | None
        html_sha256: str | None
        attachments: list[dict[str, Any]]
        in_reply_to: str | None
        references: list[str]
        thread_id: str

        def apply(self, mail: Any) -> None:
            mail.folder = mail.placed = "drafts"
            mail.status = "draft"
            mail.fields = _fields(self)

    class DraftUpdated(Aggregate.Event):
        """The draft's fields that changed (`changes`: name -> new value)."""

        TOPIC = "gbserver.mail.DraftUpdated"

        owner: str
        changes: dict[str, Any]

        def apply(self, mail: Any) -> None:
            mail.fields.update(self.changes)

    class EmailDelivered(Aggregate.Event):
        """The relay accepted the mail (`reply`: its answer)."""

        TOPIC = "gbserver.mail.EmailDelivered"

        owner: str
        reply: str
        attempts: int

        def apply(self, mail: Any) -> None:
            mail.status = "sent"

    class EmailDeliveryFailed(Aggregate.Event):
        """An attempt failed (`reply`: the relay's answer or the error); the mail is tried
        again at `retry_at`, or, `final`, it has failed for good."""

        TOPIC = "gbserver.mail.EmailDeliveryFailed"

        owner: str
        reply: str
        final: bool
        retry_at: str | None
        attempts: int

        def apply(self, mail: Any) -> None:
            mail.attempts = self.attempts
            if self.final:
                mail.status = "failed"

    class EmailTrashed(Aggregate.Event):
        TOPIC = "gbserver.mail.EmailTrashed"

        owner: str
        from_folder: str

        def apply(self, mail: Any) -> None:
            mail.folder = "trash"

    class EmailDeleted(Aggregate.Event):
        """Gone for good (deleted from the trash)."""

        TOPIC = "gbserver.mail.EmailDeleted"

        owner: str

        def apply(self, mail: Any) -> None:
            mail.deleted = True

    @event(MailCreated)
    def __init__(self, owner: str, id: UUID | None = None) -> None:
        self.owner = owner
        self.folder = ""  # where it is now
        self.placed = ""  # the folder its first folder event put it in
        self.status = ""
        self.deleted = False
        self.fields: dict[str, Any] = {}  # the folder event's fields, as changed since
        self.attempts = 0  # failed delivery attempts so far

    @classmethod
    def open(cls, owner: str, id: UUID | None = None) -> Mail:
        return cls(owner=owner, id=id)

    # --- into a folder ---------------------------------------------------------------------

    def send(self, **fields: Any) -> None:
        """Sends a new mail or this draft (the fields of EmailSent but `owner`)."""
        self._ensure_alive()
        if self.folder not in ("", "drafts"):
            raise Conflict(f"mail {self.id} is in {self.folder}, not a draft: it cannot be sent")
        self.trigger_event(self.EmailSent, owner=self.owner, **fields)

    def receive(self, **fields: Any) -> None:
        self._ensure_alive()
        if self.folder:
            raise Conflict(f"mail {self.id} was already received")
        self.trigger_event(self.EmailReceived, owner=self.owner, **fields)

    def save_draft(self, **fields: Any) -> None:
        self._ensure_alive()
        if self.folder:
            raise Conflict(f"mail {self.id} was already saved")
        self.trigger_event(self.DraftSaved, owner=self.owner, **fields)

    def update_draft(self, changes: dict[str, Any]) -> None:
        self._ensure_alive()
        if self.folder != "drafts":
            raise Conflict(f"mail {self.id} is in {self.folder}, not a draft: it cannot change")
        edits = {k: v for k, v in changes.items() if self.fields.get(k) != v}
        if edits:
            self.trigger_event(self.DraftUpdated, owner=self.owner, changes=edits)

    # --- delivery --------------------------------------------------------------------------

    @property
    def awaits_delivery(self) -> bool:
        return self.placed == "sent" and self.status == "queued"

    def delivered(self, reply: str) -> bool:
        """Records the relay's acceptance; False (nothing recorded) unless it was queued."""
        if self.status != "queued":
            return False
        self.trigger_event(
            self.EmailDelivered,
            owner=self.owner,
            reply=reply[:MAX_REPLY_CHARS],
            attempts=self.attempts,
        )
        return True

    def delivery_failed(self, reply: str, final: bool, retry_at: str | None) -> bool:
        """Records a failed attempt; False (nothing recorded) unless it was queued."""
        if self.status != "queued":
            return False
        self.trigger_event(
            self.EmailDeliveryFailed,
            owner=self.owner,
            reply=reply[:MAX_REPLY_CHARS],
            final=final,
            retry_at=None if final else retry_at,
            attempts=self.attempts + 1,
        )
        return True

    # --- out of the mailbox ----------------------------------------------------------------

    def delete(self) -> None:
        """To the trash; from the trash, gone for good."""
        self._ensure_alive()
        if self.folder == "trash":
            self.trigger_event(self.EmailDeleted, owner=self.owner)
        else:
            self.trigger_event(self.EmailTrashed, owner=self.owner, from_folder=self.folder)

    def _ensure_alive(self) -> None:
        if self.deleted:
            raise Gone(f"mail {self.id} was deleted")


# What a folder event records besides its owner: the mail's fields.
_BASE = ("originator_id", "originator_version", "timestamp", "owner")


def _fields(e: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(e).items() if k not in _BASE}
