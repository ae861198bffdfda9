"""Admin commands: issue and revoke API tokens."""

from __future__ import annotations

import hashlib
import hmac
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
# A token's aggregate id derives from its hash: authentication reads the token itself, at
# once, instead of waiting for the tokens read model (a token from `gbserver token create`
# or another server works on its first use). Tokens issued before had random ids.
_TOKEN_IDS = UUID("b7d1f7a2-52c4-4d0e-8f4a-3e9c6a1d2b58")


class IssueToken(msgspec.Struct, forbid_unknown_fields=True):
    user: Email
    role: Literal["admin", "user"] = "user"


def hash_token(secret: str) -> str:
    """Tokens carry 256 random bits, so one unsalted SHA-256 is safe and allows lookup by hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return "gb_" + secrets.token_urlsafe(32)


def token_id(token_hash: str) -> UUID:
    """The aggregate id of the token with this hash (for tokens issued with derived ids)."""
    return uuid5(_TOKEN_IDS, token_hash)


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
            token_hash=(digest := hash_token(secret)),
            issued_by=actor.email,
            id=token_id(digest),
        )
        return str(token.id), secret, save_new(self.store, token, claim)

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, read from the event store by id (one indexed read per
        candidate, never a wait): the one whose id derives from the hash, else the bootstrap
        admin token if the hash is its. None for any other token (unknown, or issued before
        ids were derived: those are found in the read model)."""
        for candidate in (token_id(token_hash), _BOOTSTRAP_ID):
            try:
                token = self.store.get(candidate)
            except NotFound:
                continue
            if isinstance(token, ApiToken) and hmac.compare_digest(token.token_hash, token_hash):
                return token
        return None

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
