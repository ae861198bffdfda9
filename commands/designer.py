"""Designer commands: create, edit, delete, check and deploy a bot's dialogs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from commands.idempotency import AlreadyClaimed, Claim
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.basic import Report
from domain.common import Actor, Forbidden, VersionMismatch
from domain.designer import (
    Dialog,
    DialogNameClaim,
    DuplicateDialog,
    dialog_name,
    name_claim_id,
    name_key,
)
from domain.idempotency import IdempotencyClaim, claim_id

MAX_SOURCE_CHARS = 200_000

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}([.][Bb][Aa][Ss])?$"
BOT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"

Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=104,
        pattern=NAME_PATTERN,
        description=(
            "Letters, digits, '_' and '-' (1-100, not starting with '-'); a '.bas' suffix is"
            " dropped. Unique within the bot, without regard to case."
        ),
    ),
]
BotId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=BOT_PATTERN,
        description="The bot the dialog belongs to: letters, digits, '_', '-' and '.'",
    ),
]
Source = Annotated[
    str,
    Meta(max_length=MAX_SOURCE_CHARS, description="The dialog's BASIC source (a .bas text)"),
]


class CreateDialog(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    content: Source = ""
    bot_id: BotId = "default"


class UpdateDialog(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    content: Source | UnsetType = UNSET


def _record(claim: Claim | None, resource_id: str) -> list[IdempotencyClaim]:
    """The Idempotency-Key's claim, saved with what the request makes (commands.idempotency)."""
    if claim is None:
        return []
    return [
        IdempotencyClaim(
            user=claim.user,
            key=claim.key,
            fingerprint=claim.fingerprint,
            resource_id=resource_id,
            id=claim_id(claim.user, claim.key),
        )
    ]


# The names of a bot's dialogs (what `CALL "other.bas"` may name), from the read model.
DialogNames = Callable[[str], Iterable[str]]


class DesignerCommands:
    def __init__(self, store: EventStore, names_of: DialogNames, http_allowed: bool) -> None:
        self.store = store
        self.names_of = names_of
        self.http_allowed = http_allowed

    def create(
        self, actor: Actor, cmd: CreateDialog, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        name = dialog_name(cmd.name)
        dialog = Dialog(owner=actor.email, bot_id=cmd.bot_id, name=name, content=cmd.content)
        try:
            holder = self._hold(cmd.bot_id, name, str(dialog.id))
            return str(dialog.id), self.store.save(dialog, holder, *_record(claim, str(dialog.id)))
        except (DuplicateDialog, ConcurrencyConflict):
            # A retried request finds its own name taken: the key decides what it gets.
            self._refuse_reused_key(claim)
            raise DuplicateDialog(cmd.bot_id, name) from None

    def update(
        self, actor: Actor, dialog_id: UUID, cmd: UpdateDialog, expected_version: int | None
    ) -> Saved:
        dialog = self._load(actor, dialog_id, expected_version)
        fields: dict[str, object] = {}
        if not isinstance(cmd.content, UnsetType):
            fields["content"] = cmd.content
        saving: list[object] = [dialog]
        name = dialog.name if isinstance(cmd.name, UnsetType) else dialog_name(cmd.name)
        renamed = name_key(name) != name_key(dialog.name)
        if renamed:
            saving.append(self._hold(dialog.bot_id, name, str(dialog.id)))
            old = self._held(dialog.bot_id, dialog.name)
            if old is not None:
                old.release(str(dialog.id))
                saving.append(old)
        if not isinstance(cmd.name, UnsetType):
            fields["name"] = name
        dialog.edit(actor.email, fields)
        try:
            return self.store.save(*saving)
        except ConcurrencyConflict:
            if renamed:  # lost the name to another dialog, or the dialog itself changed
                self._hold(dialog.bot_id, name, str(dialog.id))
            raise

    def delete(self, actor: Actor, dialog_id: UUID, expected_version: int | None) -> Saved:
        dialog = self._load(actor, dialog_id, expected_version)
        dialog.delete(actor.email)
        holder = self._held(dialog.bot_id, dialog.name)
        if holder is None:
            return self.store.save(dialog)
        holder.release(str(dialog.id))
        return self.store.save(dialog, holder)

    def check(self, dialog_id: UUID) -> Report:
        """Validates the draft exactly as a deploy would; anyone may ask."""
        dialog = self._get(dialog_id)
        return dialog.check(self.names_of(dialog.bot_id), self.http_allowed)

    def deploy(
        self,
        actor: Actor,
        dialog_id: UUID,
        expected_version: int | None,
        claim: Claim | None = None,
    ) -> tuple[str, Saved]:
        """The draft becomes the live version N+1 (returned as text, the claim's resource),
        or InvalidDialog with the errors. A retried key answers with its first deploy."""
        self._refuse_reused_key(claim)
        dialog = self._load(actor, dialog_id, expected_version)
        version = str(dialog.deploy(actor.email, self.names_of(dialog.bot_id), self.http_allowed))
        try:
            return version, self.store.save(dialog, *_record(claim, version))
        except ConcurrencyConflict:
            self._refuse_reused_key(claim)
            raise

    def _refuse_reused_key(self, claim: Claim | None) -> None:
        if claim is None:
            return
        try:
            first = self.store.get(claim_id(claim.user, claim.key))
        except NotFound:
            return
        raise AlreadyClaimed(first.resource_id, first.fingerprint == claim.fingerprint)

    def _held(self, bot_id: str, name: str) -> DialogNameClaim | None:
        try:
            holder = self.store.get(name_claim_id(bot_id, name))
        except NotFound:
            return None
        return holder if isinstance(holder, DialogNameClaim) else None

    def _hold(self, bot_id: str, name: str, dialog_id: str) -> DialogNameClaim:
        """The name's claim, taken by this dialog (not saved yet); DuplicateDialog if held."""
        holder = self._held(bot_id, name)
        if holder is None:
            return DialogNameClaim(
                bot_id=bot_id, name=name, dialog_id=dialog_id, id=name_claim_id(bot_id, name)
            )
        holder.claim(name, dialog_id)
        return holder

    def _get(self, dialog_id: UUID) -> Dialog:
        dialog = self.store.get(dialog_id)
        if not isinstance(dialog, Dialog) or dialog.deleted:
            raise NotFound(str(dialog_id))
        return dialog

    def _load(self, actor: Actor, dialog_id: UUID, expected_version: int | None) -> Dialog:
        dialog = self._get(dialog_id)
        if not (actor.is_admin or dialog.may_be_changed_by(actor.email)):
            raise Forbidden(f"only the creator of dialog {dialog_id} or an admin may change it")
        if expected_version is not None and expected_version != dialog.version:
            raise VersionMismatch(expected_version, dialog.version)
        return dialog
