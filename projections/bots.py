"""Bots read model: each claimed bot with its owners, and who owns what (for the list).

A bot's dialog count is read from the designer's table at query time (one indexed count).
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import Actor, Forbidden, rfc3339
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

COLUMNS = "id, owners, version, created_at, created_by, updated_at, updated_by"
VIEW = (
    "b.id, b.owners, b.version, b.created_at, b.created_by, b.updated_at, b.updated_by,"
    " (SELECT COUNT(*) FROM designer_dialogs d WHERE d.bot_id = b.id) AS dialogs"
)


class BotView(msgspec.Struct, omit_defaults=False):
    id: str
    owners: list[str]
    dialogs: int
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    version: int


class BotOwners(msgspec.Struct, omit_defaults=False):
    bot_id: str
    owners: list[str]
    version: int


class BotsProjection(Projection):
    name = "bots"
    tables = ("bots", "bot_owners")
    schema = (
        "CREATE TABLE IF NOT EXISTS bots ("
        " id TEXT PRIMARY KEY, owners TEXT NOT NULL, version BIGINT NOT NULL,"
        " created_at TEXT NOT NULL, created_by TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " updated_by TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS bot_owners ("
        " email TEXT NOT NULL, bot_id TEXT NOT NULL, PRIMARY KEY (email, bot_id))",
    )

    @handles("gbserver.bots.BotClaimed")
    def claimed(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            f"INSERT INTO bots ({COLUMNS}) VALUES (?,?,?,?,?,?,?)",
            (e.bot_id, _encoded(e.owners), e.originator_version, at, e.by, at, e.by),
        )
        _own(sql, e.bot_id, e.owners)

    @handles("gbserver.bots.BotOwnersChanged")
    def owners_changed(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE bots SET owners = ?, version = ?, updated_at = ?, updated_by = ? WHERE id = ?",
            (_encoded(e.owners), e.originator_version, rfc3339(e.timestamp), e.by, e.bot_id),
        )
        sql.execute("DELETE FROM bot_owners WHERE bot_id = ?", (e.bot_id,))
        _own(sql, e.bot_id, e.owners)


def _encoded(owners: list[str]) -> str:
    return msgspec.json.encode(owners).decode()


def _own(sql: Sql, bot_id: str, owners: list[str]) -> None:
    sql.executemany(
        "INSERT INTO bot_owners (email, bot_id) VALUES (?, ?)", [(o, bot_id) for o in owners]
    )


def _view(row: dict[str, Any]) -> BotView:
    return BotView(
        id=row["id"],
        owners=msgspec.json.decode(row["owners"], type=list[str]),
        dialogs=int(row["dialogs"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        version=int(row["version"]),
    )


LISTING = Listing(_view, VIEW, "bots b", "b.id")


def bot_owners(store: ReadStore, bot_id: str) -> BotOwners | None:
    """The bot's owners, whoever asks; None for a bot nobody has claimed."""
    with store.read() as sql:
        sql.execute("SELECT id, owners, version FROM bots WHERE id = ?", (bot_id,))
        row = sql.fetchone()
    if row is None:
        return None
    owners = msgspec.json.decode(row["owners"], type=list[str])
    return BotOwners(bot_id=row["id"], owners=owners, version=int(row["version"]))


def get_owners(store: ReadStore, bot_id: str, actor: Actor) -> BotOwners | None:
    """The bot's owners for its owners and admins; None for a bot nobody has claimed,
    Forbidden for anyone else."""
    found = bot_owners(store, bot_id)
    if found is not None and not (actor.is_admin or actor.email.lower() in found.owners):
        raise Forbidden(f"only the owners of bot {bot_id} or an admin may see its owners")
    return found


def list_bots(store: ReadStore, actor: Actor, limit: int, offset: int) -> Page[BotView]:
    """The bots the actor owns, by id; an admin's list holds every claimed bot."""
    condition = Where()
    if not actor.is_admin:
        email = actor.email.lower()
        condition.add("b.id IN (SELECT o.bot_id FROM bot_owners o WHERE o.email = ?)", email)
    with store.read() as sql:
        return LISTING.fetch(sql, limit, offset, condition)
