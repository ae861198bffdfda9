"""Bots: who owns a bot, and so who may create, change, deploy and delete its dialogs.

A bot exists as an aggregate from its first dialog on (or from an admin setting its owners).
Its id is derived from the bot's id, so two users creating the first dialog of one new bot
at once save the same aggregate twice: the event store keeps one, and one owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.common import DomainError

# The bot every conversation without a bot_id talks to: only admins claim it or set its owners.
DEFAULT_BOT = "default"
MAX_OWNERS = 100

_NAMESPACE = UUID("a6b0f0d2-7c1e-4b8e-9d3a-2f5c8e1b4a60")


def bot_aggregate_id(bot_id: str) -> UUID:
    return uuid5(_NAMESPACE, bot_id)


def owner_list(emails: Iterable[str]) -> list[str]:
    """Owners as stored: lower case, each once, in the order given."""
    return list(dict.fromkeys(e.lower() for e in emails))


class NoOwners(DomainError):
    """A bot keeps at least one owner."""

    def __init__(self, bot_id: str) -> None:
        super().__init__(f"bot {bot_id} must keep at least one owner")


class Bot(Aggregate):
    TOPIC = "gbserver.bots.Bot"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.bots.Bot.Created"

    @event("BotClaimed", topic="gbserver.bots.BotClaimed")
    def __init__(self, bot_id: str, owners: list[str], by: str, id: UUID | None = None) -> None:
        self.bot_id = bot_id
        self.owners = list(owners)

    @classmethod
    def claim(cls, bot_id: str, owners: Iterable[str], by: str) -> Bot:
        """A new bot, owned by `owners` (the first dialog's creator, or an admin's choice)."""
        listed = owner_list(owners)
        if not listed:
            raise NoOwners(bot_id)
        return cls(bot_id=bot_id, owners=listed, by=by, id=bot_aggregate_id(bot_id))

    def is_owned_by(self, email: str) -> bool:
        return email.lower() in self.owners

    def set_owners(self, by: str, owners: Iterable[str]) -> None:
        """Replaces the owners; the same list again records nothing."""
        listed = owner_list(owners)
        if not listed:
            raise NoOwners(self.bot_id)
        if listed != self.owners:
            self._owners_changed(bot_id=self.bot_id, owners=listed, by=by)

    @event("BotOwnersChanged", topic="gbserver.bots.BotOwnersChanged")
    def _owners_changed(self, bot_id: str, owners: list[str], by: str) -> None:
        self.owners = list(owners)
