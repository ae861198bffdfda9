"""IMAP accounts read model: each connected account, its sync state and position.

No password column: the sync worker reads the encrypted password from the account itself
(its events), and the API shows none. A removed account's row stays, marked `removed`
(hidden from every query): connected again, it goes on with its position and counts.
"""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import rfc3339
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

COLUMNS = (
    "id, host, port, security, username, folder, status, last_error, last_error_at,"
    " imported, skipped, uidvalidity, last_uid, connected_at, updated_at"
)


class AccountView(msgspec.Struct):
    id: str
    host: str
    port: int
    security: str
    username: str
    folder: str
    status: str
    last_error: str | None
    last_error_at: str | None
    imported: int
    skipped: int
    uidvalidity: int | None
    last_uid: int
    connected_at: str
    updated_at: str


LISTING = Listing(AccountView, COLUMNS, "mail_accounts", "connected_at DESC, id")


class MailAccountsProjection(Projection):
    name = "mail_accounts"
    tables = ("mail_accounts",)
    schema = (
        "CREATE TABLE IF NOT EXISTS mail_accounts ("
        " id TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, port BIGINT NOT NULL,"
        " security TEXT NOT NULL, username TEXT NOT NULL, folder TEXT NOT NULL,"
        " status TEXT NOT NULL, last_error TEXT, last_error_at TEXT,"
        " imported BIGINT NOT NULL, skipped BIGINT NOT NULL, uidvalidity BIGINT,"
        " last_uid BIGINT NOT NULL, connected_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " version BIGINT NOT NULL, removed SMALLINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS mail_accounts_owner"
        " ON mail_accounts (owner, removed, connected_at)",
    )

    @handles("gbserver.mail_accounts.ImapAccountConnected")
    def connected(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            "INSERT INTO mail_accounts (id, owner, host, port, security, username, folder,"
            " status, last_error, last_error_at, imported, skipped, uidvalidity, last_uid,"
            " connected_at, updated_at, version, removed)"
            " VALUES (?,?,?,?,?,?,?,'pending',NULL,NULL,0,0,NULL,0,?,?,?,0)",
            (
                str(e.originator_id),
                e.owner,
                e.host,
                e.port,
                e.security,
                e.username,
                e.folder,
                at,
                at,
                e.originator_version,
            ),
        )

    @handles("gbserver.mail_accounts.ImapAccountReconnected")
    def reconnected(self, sql: Sql, e: Any) -> None:
        # Its position and counts stay (the row was kept, marked removed).
        at = rfc3339(e.timestamp)
        sql.execute(
            "UPDATE mail_accounts SET removed = 0, host = ?, port = ?, security = ?,"
            " status = 'pending', last_error = NULL, last_error_at = NULL, connected_at = ?,"
            " updated_at = ?, version = ? WHERE id = ?",
            (e.host, e.port, e.security, at, at, e.originator_version, str(e.originator_id)),
        )

    @handles("gbserver.mail_accounts.ImapAccountRemoved")
    def removed(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE mail_accounts SET removed = 1, updated_at = ?, version = ? WHERE id = ?",
            (rfc3339(e.timestamp), e.originator_version, str(e.originator_id)),
        )

    @handles("gbserver.mail_accounts.ImapSynced")
    def synced(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE mail_accounts SET status = 'ok', last_error = NULL, last_error_at = NULL,"
            " imported = imported + ?, skipped = skipped + ?, uidvalidity = ?, last_uid = ?,"
            " updated_at = ?, version = ? WHERE id = ?",
            (
                e.received,
                e.skipped,
                e.uidvalidity,
                e.last_uid,
                rfc3339(e.timestamp),
                e.originator_version,
                str(e.originator_id),
            ),
        )

    @handles("gbserver.mail_accounts.ImapSyncFailed")
    def failed(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            "UPDATE mail_accounts SET status = 'error', last_error = ?, last_error_at = ?,"
            " updated_at = ?, version = ? WHERE id = ?",
            (e.error, at, at, e.originator_version, str(e.originator_id)),
        )


def get_account(store: ReadStore, account_id: str, owner: str) -> AccountView | None:
    """The owner's account (None: unknown, removed, or another user's)."""
    with store.read() as sql:
        sql.execute(
            f"SELECT {COLUMNS} FROM mail_accounts WHERE id = ? AND owner = ? AND removed = 0",
            (account_id, owner),
        )
        row = sql.fetchone()
    return None if row is None else msgspec.convert(row, AccountView, strict=False)


def list_accounts(store: ReadStore, owner: str, limit: int, offset: int) -> Page[AccountView]:
    """The owner's accounts, the most recently connected first (an admin's too: only theirs)."""
    with store.read() as sql:
        return LISTING.fetch(sql, limit, offset, Where().add("owner = ? AND removed = 0", owner))


def accounts_to_sync(store: ReadStore) -> list[tuple[str, str]]:
    """Every connected account as (id, connected_at): a reconnected account is new to the
    worker (synced at once, its error backoff forgotten)."""
    with store.read() as sql:
        sql.execute(
            "SELECT id, connected_at FROM mail_accounts WHERE removed = 0 ORDER BY connected_at, id"
        )
        return [(str(row["id"]), str(row["connected_at"])) for row in sql.fetchall()]
