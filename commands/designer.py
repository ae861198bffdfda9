"""Designer commands: create, edit, delete, check and deploy a bot's dialogs.

Only a bot's owners and admins write its dialogs (commands.bots); anyone may validate them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from commands.bots import claim_for_first_dialog, find_bot, require_dialog_rights
from commands.idempotency import Claim, refuse_reused
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.basic import Report
from domain.bots import Bot
from domain.common import Actor, IfMatch, check_version
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
            "A dialog name of letters, digits, '_' and '-' (1 to 100, not starting with '-');"
            " a '.bas' suffix is dropped. Unique within the bot, without regard to case."
        ),
        examples=["greeting"],
    ),
]
BotId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=BOT_PATTERN,
        description="A bot id of letters, digits, '_', '-' and '.' (1 to 100, not starting"
        " with '-' or '.'); the bot the dialog belongs to",
        examples=["default"],
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


class BotClaimedMeanwhile(Exception):
    """Another request claimed the bot between our look and our save."""


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
        """A new dialog; the first one of a bot claims the bot for its creator, in the same
        transaction, so of two users starting one bot at once exactly one owns it."""
        refuse_reused(self.store, claim)
        try:
            return self._create(actor, cmd, claim)
        except BotClaimedMeanwhile:
            # The bot is someone's now: as its owner, create in it; otherwise Forbidden.
            return self._create(actor, cmd, claim)

    def _create(self, actor: Actor, cmd: CreateDialog, claim: Claim | None) -> tuple[str, Saved]:
        name = dialog_name(cmd.name)
        bot = find_bot(self.store, cmd.bot_id)
        claiming: list[Bot] = []
        if bot is None:
            has_dialogs = bool(list(self.names_of(cmd.bot_id)))
            claiming.append(claim_for_first_dialog(actor, cmd.bot_id, has_dialogs))
        else:
            require_dialog_rights(actor, cmd.bot_id, bot)
        dialog = Dialog(owner=actor.email, bot_id=cmd.bot_id, name=name, content=cmd.content)
        try:
            holder = self._hold(cmd.bot_id, name, str(dialog.id))
            saving = (dialog, holder, *claiming, *_record(claim, str(dialog.id)))
            return str(dialog.id), self.store.save(*saving)
        except (DuplicateDialog, ConcurrencyConflict):
            # A retried request finds its own name taken: the key decides what it gets.
            refuse_reused(self.store, claim)
            if claiming and find_bot(self.store, cmd.bot_id) is not None:
                raise BotClaimedMeanwhile(cmd.bot_id) from None
            raise DuplicateDialog(cmd.bot_id, name) from None

    def update(
        self, actor: Actor, dialog_id: UUID, cmd: UpdateDialog, expected_version: IfMatch | None
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

    def delete(self, actor: Actor, dialog_id: UUID, expected_version: IfMatch | None) -> Saved:
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
        expected_version: IfMatch | None,
        claim: Claim | None = None,
    ) -> tuple[str, Saved]:
        """The draft becomes the live version N+1 (returned as text, the claim's resource),
        or InvalidDialog with the errors. A retried key answers with its first deploy."""
        refuse_reused(self.store, claim)
        dialog = self._load(actor, dialog_id, expected_version)
        version = str(dialog.deploy(actor.email, self.names_of(dialog.bot_id), self.http_allowed))
        try:
            return version, self.store.save(dialog, *_record(claim, version))
        except ConcurrencyConflict:
            refuse_reused(self.store, claim)
            raise

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

    def _load(self, actor: Actor, dialog_id: UUID, expected_version: IfMatch | None) -> Dialog:
        dialog = self._get(dialog_id)
        require_dialog_rights(actor, dialog.bot_id, find_bot(self.store, dialog.bot_id))
        check_version(expected_version, dialog.version)
        return dialog
