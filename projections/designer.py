"""Designer read model: each bot's dialogs (drafts) and every version deployed.

Version rows outlive their dialog: a conversation that started on a version can still load
its source after the dialog is deleted (`deployed_source`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import rfc3339
from domain.designer import EDITABLE, content_hash, name_key
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

COLUMNS = (
    "d.id, d.bot_id, d.name, d.content, d.owner, d.version, d.created_at, d.updated_at,"
    " d.updated_by, d.deployed_version, v.deployed_at, v.deployed_by,"
    " (d.deployed_hash IS NULL OR d.deployed_hash <> d.content_hash) AS has_undeployed_changes"
)
# The live version's row, if any, beside each dialog (one at most: the join is on its key).
DIALOGS = (
    "designer_dialogs d LEFT JOIN designer_versions v"
    " ON v.dialog_id = d.id AND v.version = d.deployed_version"
)
VERSION_COLUMNS = "dialog_id, bot_id, name, version, content_hash, deployed_at, deployed_by"
# A version's row as a DeployedVersion (and, with content, a DeployedSource).
VERSION_VIEW = "dialog_id AS id, bot_id, name, version, content_hash, deployed_at, deployed_by"


class DialogView(msgspec.Struct, omit_defaults=False):
    id: str
    bot_id: str
    name: str
    content: str
    owner: str
    version: int
    created_at: str
    updated_at: str
    updated_by: str
    deployed_version: int | None
    deployed_at: str | None
    deployed_by: str | None
    has_undeployed_changes: bool


class DeployedVersion(msgspec.Struct):
    id: str
    bot_id: str
    name: str
    version: int
    content_hash: str
    deployed_at: str
    deployed_by: str


class DeployedSource(msgspec.Struct):
    id: str
    bot_id: str
    name: str
    version: int
    content_hash: str
    deployed_at: str
    deployed_by: str
    content: str


DIALOG_LISTING = Listing(DialogView, COLUMNS, DIALOGS, "d.bot_id, d.name_key, d.id")
VERSION_LISTING = Listing(DeployedVersion, VERSION_VIEW, "designer_versions", "version")


class DialogFilter(msgspec.Struct, frozen=True):
    bot_id: str | None = None
    name: str | None = None


class DesignerProjection(Projection):
    name = "designer"
    tables = ("designer_dialogs", "designer_versions")
    schema = (
        "CREATE TABLE IF NOT EXISTS designer_dialogs ("
        " id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, name TEXT NOT NULL, name_key TEXT NOT NULL,"
        " content TEXT NOT NULL, content_hash TEXT NOT NULL, owner TEXT NOT NULL,"
        " version BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " updated_by TEXT NOT NULL, deployed_version BIGINT, deployed_hash TEXT)",
        # Not UNIQUE: the log guarantees one holder per name, but a partitioned feed may
        # apply one dialog's rename after another's create of the freed name.
        "CREATE INDEX IF NOT EXISTS designer_dialogs_bot"
        " ON designer_dialogs (bot_id, name_key, id)",
        "CREATE INDEX IF NOT EXISTS designer_dialogs_name ON designer_dialogs (name_key, bot_id)",
        "CREATE TABLE IF NOT EXISTS designer_versions ("
        " dialog_id TEXT NOT NULL, version BIGINT NOT NULL, bot_id TEXT NOT NULL,"
        " name TEXT NOT NULL, name_key TEXT NOT NULL, content TEXT NOT NULL,"
        " content_hash TEXT NOT NULL, deployed_at TEXT NOT NULL, deployed_by TEXT NOT NULL,"
        " PRIMARY KEY (dialog_id, version))",
        "CREATE INDEX IF NOT EXISTS designer_versions_name"
        " ON designer_versions (bot_id, name_key, version, deployed_at)",
    )

    @handles("gbserver.designer.DialogCreated")
    def created(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            "INSERT INTO designer_dialogs (id, bot_id, name, name_key, content, content_hash,"
            " owner, version, created_at, updated_at, updated_by, deployed_version,"
            " deployed_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,NULL,NULL)",
            (
                str(e.originator_id),
                e.bot_id,
                e.name,
                name_key(e.name),
                e.content,
                content_hash(e.content),
                e.owner,
                e.originator_version,
                at,
                at,
                e.owner,
            ),
        )

    @handles("gbserver.designer.DialogEdited")
    def edited(self, sql: Sql, e: Any) -> None:
        values: dict[str, Any] = {f: e.changes[f] for f in EDITABLE if f in e.changes}
        if "name" in values:
            values["name_key"] = name_key(values["name"])
        if "content" in values:
            values["content_hash"] = content_hash(values["content"])
        fields = sorted(values)
        assignments = "".join(f"{f} = ?, " for f in fields)
        sql.execute(
            f"UPDATE designer_dialogs SET {assignments}version = ?, updated_at = ?,"
            " updated_by = ? WHERE id = ?",
            (
                *(values[f] for f in fields),
                e.originator_version,
                rfc3339(e.timestamp),
                e.author,
                str(e.originator_id),
            ),
        )

    @handles("gbserver.designer.DialogDeployed")
    def deployed(self, sql: Sql, e: Any) -> None:
        dialog_id, digest = str(e.originator_id), content_hash(e.source)
        sql.execute(
            f"INSERT INTO designer_versions ({VERSION_COLUMNS}, name_key, content)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                dialog_id,
                e.bot_id,
                e.name,
                e.version,
                digest,
                rfc3339(e.timestamp),
                e.author,
                name_key(e.name),
                e.source,
            ),
        )
        sql.execute(
            "UPDATE designer_dialogs SET deployed_version = ?, deployed_hash = ?, version = ?"
            " WHERE id = ?",
            (e.version, digest, e.originator_version, dialog_id),
        )

    @handles("gbserver.designer.DialogDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        sql.execute("DELETE FROM designer_dialogs WHERE id = ?", (str(e.originator_id),))


def get_dialog(store: ReadStore, dialog_id: str) -> DialogView | None:
    """Any authenticated user may read a bot's dialogs."""
    with store.read() as sql:
        sql.execute(f"SELECT {COLUMNS} FROM {DIALOGS} WHERE d.id = ?", (dialog_id,))
        row = sql.fetchone()
    return None if row is None else msgspec.convert(row, DialogView, strict=False)


def list_dialogs(
    store: ReadStore, where: DialogFilter, limit: int, offset: int
) -> Page[DialogView]:
    condition = Where().equal("d.bot_id", where.bot_id)
    if where.name is not None:
        condition.add("d.name_key = ?", name_key(where.name))
    with store.read() as sql:
        return DIALOG_LISTING.fetch(sql, limit, offset, condition)


def dialog_names(store: ReadStore, bot_id: str) -> set[str]:
    """The names of a bot's dialogs, for `CALL "name.bas"`."""
    with store.read() as sql:
        sql.execute("SELECT name FROM designer_dialogs WHERE bot_id = ?", (bot_id,))
        return {row["name"] for row in sql.fetchall()}


def _exists(sql: Sql, dialog_id: str) -> bool:
    sql.execute("SELECT id FROM designer_dialogs WHERE id = ?", (dialog_id,))
    return sql.fetchone() is not None


def list_versions(
    store: ReadStore, dialog_id: str, limit: int, offset: int
) -> Page[DeployedVersion] | None:
    """A dialog's deployed versions, oldest first; None if there is no such dialog."""
    with store.read() as sql:
        if not _exists(sql, dialog_id):
            return None
        return VERSION_LISTING.fetch(sql, limit, offset, Where().add("dialog_id = ?", dialog_id))


def _source(sql: Sql, dialog_id: str, version: int) -> DeployedSource | None:
    sql.execute(
        f"SELECT {VERSION_VIEW}, content FROM designer_versions"
        " WHERE dialog_id = ? AND version = ?",
        (dialog_id, version),
    )
    row = sql.fetchone()
    return None if row is None else msgspec.convert(row, DeployedSource, strict=False)


def get_version(store: ReadStore, dialog_id: str, version: int) -> DeployedSource | None:
    """A deployed version of a dialog; None if either is missing (or the dialog deleted)."""
    with store.read() as sql:
        return _source(sql, dialog_id, version) if _exists(sql, dialog_id) else None


def deployed_source(store: ReadStore, dialog_id: str, version: int) -> DeployedSource | None:
    """Exactly what was deployed as a version, even if the dialog was deleted since
    (a conversation keeps the version it started with)."""
    with store.read() as sql:
        return _source(sql, dialog_id, version)


def dialog_source(store: ReadStore, bot_id: str, name: str, version: int) -> DeployedSource | None:
    """Version N of the dialog a bot knows by this name, for a conversation that started on it:
    the dialog that holds the name now, else the last one deployed under it (since renamed or
    deleted)."""
    key = name_key(name)
    with store.read() as sql:
        sql.execute(
            "SELECT id FROM designer_dialogs WHERE bot_id = ? AND name_key = ? ORDER BY id LIMIT 1",
            (bot_id, key),
        )
        holder = sql.fetchone()
        found = _source(sql, holder["id"], version) if holder else None
        if found is not None:
            return found
        sql.execute(
            "SELECT dialog_id FROM designer_versions"
            " WHERE bot_id = ? AND name_key = ? AND version = ?"
            " ORDER BY deployed_at DESC, dialog_id LIMIT 1",
            (bot_id, key, version),
        )
        past = sql.fetchone()
        return _source(sql, past["dialog_id"], version) if past else None


def live_dialog(store: ReadStore, bot_id: str, name: str) -> DeployedSource | None:
    """The live version of a bot's dialog by name (`start`, `other.bas`); None if undeployed."""
    with store.read() as sql:
        sql.execute(
            "SELECT id, deployed_version FROM designer_dialogs"
            " WHERE bot_id = ? AND name_key = ? AND deployed_version IS NOT NULL"
            " ORDER BY id LIMIT 1",
            (bot_id, name_key(name)),
        )
        row = sql.fetchone()
        return None if row is None else _source(sql, row["id"], int(row["deployed_version"]))
