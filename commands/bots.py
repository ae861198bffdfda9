"""Bot commands and rules: who owns a bot, who may change its dialogs, who may set its owners.

- Creating the first dialog of a bot claims it: its creator becomes the owner, in the same
  transaction as the dialog (DesignerCommands.create). `default` is claimed by admins only.
- Only a bot's owners and admins create, change, deploy and delete its dialogs.
- Owners and admins replace the owner list; for `default`, admins only. An admin may also set
  the owners of a bot nobody has claimed yet (a bot whose dialogs predate owners, or `default`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from commands.ports import EventStore, NotFound, Saved
from domain.bots import DEFAULT_BOT, MAX_OWNERS, Bot, bot_aggregate_id
from domain.common import Actor, Forbidden, IfMatch, check_version

_ADDRESS_PART = (
    r"[^@ \t\n\r\f\v\x00-\x1f\x7f-\xa0"
    r"\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+"
)
# A token's user: an email (the bootstrap admin's `admin@localhost` has no dot after the @).
OWNER_PATTERN = f"^{_ADDRESS_PART}@{_ADDRESS_PART}$"
OWNER_DESCRIPTION = (
    "An owner's email such as ana@example.com; as in their token, compared without case"
)
Owner = Annotated[
    str, Meta(min_length=3, max_length=254, pattern=OWNER_PATTERN, description=OWNER_DESCRIPTION)
]
# Litestar's OpenAPI drops a list item's constraints: SetOwners restates them.
_OWNER_SCHEMA = {
    "type": "string",
    "minLength": 3,
    "maxLength": 254,
    "pattern": OWNER_PATTERN,
    "description": OWNER_DESCRIPTION,
}


class SetOwners(msgspec.Struct, forbid_unknown_fields=True):
    owners: Annotated[
        list[Owner],
        Meta(
            min_length=1,
            max_length=MAX_OWNERS,
            description=f"The bot's owners, replacing the current list (1-{MAX_OWNERS})",
            extra_json_schema={"extra": {"items": _OWNER_SCHEMA}},
        ),
    ]


def find_bot(store: EventStore, bot_id: str) -> Bot | None:
    """The bot's aggregate; None while nobody has claimed it."""
    try:
        bot = store.get(bot_aggregate_id(bot_id))
    except NotFound:
        return None
    return bot if isinstance(bot, Bot) else None


def require_dialog_rights(actor: Actor, bot_id: str, bot: Bot | None) -> None:
    """Forbidden unless the actor may create, change, deploy or delete the bot's dialogs."""
    if actor.is_admin:
        return
    if bot is None:
        raise Forbidden(f"bot {bot_id} has no owners yet; only an admin may change its dialogs")
    if not bot.is_owned_by(actor.email):
        raise Forbidden(f"only the owners of bot {bot_id} and admins may change its dialogs")


def claim_for_first_dialog(actor: Actor, bot_id: str, has_dialogs: bool) -> Bot:
    """The bot, claimed by whoever creates its first dialog (not saved yet).

    `has_dialogs`: the read model already shows dialogs of this unclaimed bot, written before
    bots had owners; nobody but an admin takes such a bot over by adding one more.
    """
    if not actor.is_admin:
        if bot_id == DEFAULT_BOT:
            raise Forbidden(
                f"bot {DEFAULT_BOT} belongs to admins; create your dialogs in a bot of your own"
            )
        if has_dialogs:
            raise Forbidden(
                f"bot {bot_id} has dialogs from before bots had owners; an admin must set its"
                " owners first"
            )
    return Bot.claim(bot_id, [actor.email], by=actor.email)


class BotCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def set_owners(
        self, actor: Actor, bot_id: str, cmd: SetOwners, expected_version: IfMatch | None
    ) -> Saved:
        bot = find_bot(self.store, bot_id)
        if bot is None:
            if not actor.is_admin:
                raise NotFound(f"bot {bot_id}")
            check_version(expected_version, 0)  # no version yet: only `*` or no If-Match
            return self.store.save(Bot.claim(bot_id, cmd.owners, by=actor.email))
        if not actor.is_admin:
            if bot_id == DEFAULT_BOT:
                raise Forbidden(f"only admins may set the owners of bot {DEFAULT_BOT}")
            if not bot.is_owned_by(actor.email):
                raise Forbidden(f"only the owners of bot {bot_id} or an admin may set its owners")
        check_version(expected_version, bot.version)
        bot.set_owners(actor.email, cmd.owners)
        return self.store.save(bot)
