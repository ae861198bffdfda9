"""Designer: a bot's dialogs (BASIC source), their drafts and every version deployed.

A dialog is named within its bot; the name is stored without a `.bas` suffix and compares
without case, as `CALL "other.bas"` does. Names are held by a DialogNameClaim whose id is
derived from (bot, name), so two writers creating or renaming to one name cannot both win.
Who may write a bot's dialogs is the bot's business (domain.bots): `owner` is the creator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.basic import Report, validate
from domain.common import DomainError, Gone

EDITABLE = ("name", "content")
SUFFIX = ".bas"

_NAMESPACE = UUID("3b0d7c0e-5f1a-4c9e-8a0b-6d2f4e9c1b57")


def dialog_name(name: str) -> str:
    """A dialog's name as stored: without a `.bas` suffix (`greeting.bas` is `greeting`)."""
    return name[: -len(SUFFIX)] if name.lower().endswith(SUFFIX) else name


def name_key(name: str) -> str:
    """What two names are compared by: no suffix, no case."""
    return dialog_name(name).lower()


def name_claim_id(bot_id: str, name: str) -> UUID:
    return uuid5(_NAMESPACE, f"{bot_id}\n{name_key(name)}")


def content_hash(source: str) -> str:
    """SHA-256 of the UTF-8 source, in hex: tells versions and drafts apart without the text."""
    return hashlib.sha256(source.encode()).hexdigest()


class DuplicateDialog(DomainError):
    """The bot already has a dialog with that name."""

    def __init__(self, bot_id: str, name: str) -> None:
        super().__init__(f"bot {bot_id} already has a dialog named {name}")
        self.bot_id = bot_id
        self.name = name


class InvalidDialog(DomainError):
    """A dialog with errors cannot be deployed."""

    def __init__(self, report: Report) -> None:
        first = report.errors[0] if report.errors else None
        count = len(report.errors)
        super().__init__(
            f"the dialog has {count} error{'s' if count != 1 else ''} and was not deployed"
            + (f"; {first}" if first else "")
        )
        self.report = report


class Dialog(Aggregate):
    TOPIC = "gbserver.designer.Dialog"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.designer.Dialog.Created"

    @event("DialogCreated", topic="gbserver.designer.DialogCreated")
    def __init__(self, owner: str, bot_id: str, name: str, content: str) -> None:
        self.owner = owner
        self.bot_id = bot_id
        self.name = name
        self.content = content
        self.deployed_version = 0
        self.deleted = False
        self.last_author = owner

    def edit(self, author: str, fields: dict[str, Any]) -> None:
        self._ensure_alive()
        changes = {k: v for k, v in fields.items() if k in EDITABLE and getattr(self, k) != v}
        if changes:
            self._edited(author=author, changes=changes)

    def check(self, known_dialogs: Iterable[str], http_allowed: bool) -> Report:
        """What deploying the draft now would say about it."""
        self._ensure_alive()
        return validate(self.content, known_dialogs=known_dialogs, http_allowed=http_allowed)

    def deploy(self, author: str, known_dialogs: Iterable[str], http_allowed: bool) -> int:
        """Makes the draft the live version N+1; refuses a draft with errors."""
        report = self.check(known_dialogs, http_allowed)
        if not report.valid:
            raise InvalidDialog(report)
        self._deployed(
            author=author,
            version=self.deployed_version + 1,
            bot_id=self.bot_id,
            name=self.name,
            source=self.content,
        )
        return self.deployed_version

    def delete(self, author: str) -> None:
        self._ensure_alive()
        self._deleted(author=author)

    def _ensure_alive(self) -> None:
        if self.deleted:
            raise Gone(f"dialog {self.id} was deleted")

    @event("DialogEdited", topic="gbserver.designer.DialogEdited")
    def _edited(self, author: str, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.last_author = author

    # The source travels in the event: a conversation started on version N loads exactly
    # that text later, whatever the draft has become.
    @event("DialogDeployed", topic="gbserver.designer.DialogDeployed")
    def _deployed(self, author: str, version: int, bot_id: str, name: str, source: str) -> None:
        self.deployed_version = version

    @event("DialogDeleted", topic="gbserver.designer.DialogDeleted")
    def _deleted(self, author: str) -> None:
        self.deleted = True
        self.last_author = author


class DialogNameClaim(Aggregate):
    """Which dialog holds a name in a bot; released when the dialog is deleted or renamed."""

    TOPIC = "gbserver.designer.DialogNameClaim"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.designer.DialogNameClaim.Created"

    @event("DialogNameClaimed", topic="gbserver.designer.DialogNameClaimed")
    def __init__(self, bot_id: str, name: str, dialog_id: str, id: UUID | None = None) -> None:
        self.bot_id = bot_id
        self.name = name
        self.dialog_id: str | None = dialog_id

    def claim(self, name: str, dialog_id: str) -> None:
        if self.dialog_id is not None and self.dialog_id != dialog_id:
            raise DuplicateDialog(self.bot_id, name)
        if self.dialog_id is None:
            self._reclaimed(name=name, dialog_id=dialog_id)

    def release(self, dialog_id: str) -> None:
        if self.dialog_id == dialog_id:
            self._released(dialog_id=dialog_id)

    @event("DialogNameReclaimed", topic="gbserver.designer.DialogNameReclaimed")
    def _reclaimed(self, name: str, dialog_id: str) -> None:
        self.name = name
        self.dialog_id = dialog_id

    @event("DialogNameReleased", topic="gbserver.designer.DialogNameReleased")
    def _released(self, dialog_id: str) -> None:
        self.dialog_id = None
