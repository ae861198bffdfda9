"""Admin read model: API tokens by hash, for authentication and for the token list."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import rfc3339
from projections.core import Listing, Page, Projection, ReadStore, Sql, handles

COLUMNS = "id, user_email, role, token_hash, issued_at, issued_by, revoked_at"
# A row as a TokenView ("user" quoted: PostgreSQL reserves the word).
VIEW = 'id, user_email AS "user", role, issued_at, issued_by, revoked_at'


class TokenView(msgspec.Struct):
    id: str
    user: str
    role: str
    issued_at: str
    issued_by: str
    revoked_at: str | None


LISTING = Listing(TokenView, VIEW, "api_tokens", "issued_at, id")


class TokensProjection(Projection):
    name = "tokens"
    tables = ("api_tokens",)
    schema = (
        "CREATE TABLE IF NOT EXISTS api_tokens ("
        " id TEXT PRIMARY KEY, user_email TEXT NOT NULL, role TEXT NOT NULL,"
        " token_hash TEXT NOT NULL UNIQUE, issued_at TEXT NOT NULL, issued_by TEXT NOT NULL,"
        " revoked_at TEXT)",
        "CREATE INDEX IF NOT EXISTS api_tokens_issued ON api_tokens (issued_at, id)",
    )

    @handles("gbserver.admin.TokenIssued")
    def issued(self, sql: Sql, e: Any) -> None:
        sql.execute(
            f"INSERT INTO api_tokens ({COLUMNS}) VALUES (?,?,?,?,?,?,?)",
            (
                str(e.originator_id),
                e.user,
                e.role,
                e.token_hash,
                rfc3339(e.timestamp),
                e.issued_by,
                None,
            ),
        )

    @handles("gbserver.admin.TokenRevoked")
    def revoked(self, sql: Sql, e: Any) -> None:
        sql.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ?",
            (rfc3339(e.timestamp), str(e.originator_id)),
        )


def find_active_token(store: ReadStore, token_hash: str) -> TokenView | None:
    with store.read() as sql:
        sql.execute(
            f"SELECT {VIEW} FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
            (token_hash,),
        )
        row = sql.fetchone()
    return None if row is None else msgspec.convert(row, TokenView, strict=False)


def get_token(store: ReadStore, token_id: str) -> TokenView | None:
    with store.read() as sql:
        sql.execute(f"SELECT {VIEW} FROM api_tokens WHERE id = ?", (token_id,))
        row = sql.fetchone()
    return None if row is None else msgspec.convert(row, TokenView, strict=False)


def list_tokens(store: ReadStore, limit: int, offset: int) -> Page[TokenView]:
    with store.read() as sql:
        return LISTING.fetch(sql, limit, offset)
