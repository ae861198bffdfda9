"""Admin commands: issue and revoke API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal
from uuid import UUID, uuid5

import msgspec

from commands.fields import Email
from commands.idempotency import Claim, save_new
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.admin import ApiToken
from domain.common import Actor

_BOOTSTRAP_ID = uuid5(UUID("6f1c3f0e-3d55-4f4e-9a53-0b8f0f3c1a77"), "bootstrap-admin-token")
BOOTSTRAP_USER = "admin@localhost"


class IssueToken(msgspec.Struct, forbid_unknown_fields=True):
    user: Email
    role: Literal["admin", "user"] = "user"


def hash_token(secret: str) -> str:
    """Tokens carry 256 random bits, so one unsalted SHA-256 is safe and allows lookup by hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "gb_" + secrets.token_urlsafe(32)


class AdminCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def issue(
        self, actor: Actor, cmd: IssueToken, claim: Claim | None = None
    ) -> tuple[str, str, Saved]:
        secret = new_secret()
        token = ApiToken(
            user=cmd.user.lower(),
            role=cmd.role,
            token_hash=hash_token(secret),
            issued_by=actor.email,
        )
        return str(token.id), secret, save_new(self.store, token, claim)

    def revoke(self, actor: Actor, token_id: UUID) -> Saved:
        token = self.store.get(token_id)
        if not isinstance(token, ApiToken):
            raise NotFound(str(token_id))
        token.revoke(actor.email)
        return self.store.save(token)

    def bootstrap_admin(self) -> str | None:
        """On a first start, issues the admin token; returns its secret, or None if one exists."""
        secret = new_secret()
        token = ApiToken(
            user=BOOTSTRAP_USER,
            role="admin",
            token_hash=hash_token(secret),
            issued_by="gbserver",
            id=_BOOTSTRAP_ID,  # a fixed id makes a second start (or a concurrent one) collide
        )
        try:
            self.store.save(token)
        except ConcurrencyConflict:
            return None
        return secret
