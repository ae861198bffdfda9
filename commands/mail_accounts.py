"""IMAP account commands: connect, remove (the owner's own accounts only), and what the sync
worker (infra.imap) records about each sync.

The password is encrypted (`Secrets`) before it enters an event; nothing here returns or
logs it in clear, except `AccountSync.password` for the worker's LOGIN.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Protocol
from uuid import UUID

import msgspec
from msgspec import Meta

from commands.fields import InvalidField
from commands.idempotency import Claim, refuse_reused, save_claimed
from commands.ports import EventStore, NotFound, Saved
from domain.common import Actor
from domain.mail_accounts import DEFAULT_PORTS, MailAccount, account_id


class Secrets(Protocol):
    """Symmetric encryption of short secrets (infra.secrets: Fernet)."""

    def encrypt(self, text: str) -> str: ...

    def decrypt(self, token: str) -> str:
        """Raises SecretUnreadable when the token was not made with this key."""
        ...


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted (made with another key, or damaged)."""


# Host names (letters, digits, '-', '_', dot-separated labels) or IP addresses (v4, or v6
# without brackets): no scheme, port, path, user or white space.
HOST_PATTERN = (
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*"
    r"[A-Za-z0-9_])?)*|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$"
)
_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Host = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=253,
        pattern=HOST_PATTERN,
        description="A host name or IP address, without scheme or port (imap.example.com)",
        examples=["imap.example.com"],
    ),
]
Port = Annotated[int, Meta(ge=1, le=65535, description="The IMAP server's TCP port")]
Security = Annotated[
    Literal["tls", "starttls", "none"],
    Meta(
        description="`tls`: TLS from the start (IMAPS, port 993); `starttls`: plain, then"
        " STARTTLS (port 143); `none`: no encryption (loopback and tests only)"
    ),
]
Username = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=320,
        pattern=_TEXT_PATTERN,
        description="A user name of 1 to 320 characters without control characters",
        examples=["ana@example.com"],
    ),
]
Password = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=1024,
        pattern=_TEXT_PATTERN,
        description="A password of 1 to 1024 characters without control characters (kept"
        " encrypted, never shown again)",
    ),
]
Folder = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=_TEXT_PATTERN,
        description="A folder name of 1 to 200 characters without control characters",
        examples=["INBOX"],
    ),
]


class ConnectAccount(msgspec.Struct, forbid_unknown_fields=True):
    host: Host
    username: Username
    password: Password
    security: Security = "tls"
    port: Port | None = None  # by security: 993 for tls, else 143
    folder: Folder = "INBOX"


def _check_text(field: str, value: str) -> None:
    # The patterns' `$` lets a final newline through in Python (not in JSON Schema's).
    if _CONTROL.search(value):
        raise InvalidField(field, f"`{field}`: control characters are not allowed")


class MailAccountCommands:
    def __init__(self, store: EventStore, secrets: Secrets) -> None:
        self.store = store
        self.secrets = secrets

    def connect(
        self, actor: Actor, cmd: ConnectAccount, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        """Connects the mailbox (a removed one of the same mailbox again, keeping its
        position); Conflict when it is connected already."""
        refuse_reused(self.store, claim)
        for field in ("host", "username", "password", "folder"):
            _check_text(field, getattr(cmd, field))
        host = cmd.host.lower()
        port = cmd.port if cmd.port is not None else DEFAULT_PORTS[cmd.security]
        encrypted = self.secrets.encrypt(cmd.password)
        ident = account_id(actor.email, host, cmd.username, cmd.folder)
        try:
            account = self.store.get(ident)
        except NotFound:
            account = MailAccount.connect(
                owner=actor.email,
                host=host,
                port=port,
                security=cmd.security,
                username=cmd.username,
                password_encrypted=encrypted,
                folder=cmd.folder,
            )
        else:
            account.reconnect(host, port, cmd.security, encrypted)
        return str(account.id), save_claimed(self.store, claim, str(account.id), account)

    def remove(self, actor: Actor, account: UUID) -> Saved:
        found = self._load(account)
        if found is None or not found.is_owned_by(actor.email):
            raise NotFound(str(account))  # another user's is not found either
        found.remove()
        return self.store.save(found)

    def _load(self, account: UUID) -> MailAccount | None:
        try:
            found = self.store.get(account)
        except NotFound:
            return None
        if not isinstance(found, MailAccount) or found.removed:
            return None
        return found


class AccountSync:
    """What the sync worker reads and records about one account's syncs."""

    def __init__(self, store: EventStore, secrets: Secrets) -> None:
        self.store = store
        self.secrets = secrets

    def load(self, account: UUID) -> MailAccount | None:
        """The connected account (None: unknown or removed)."""
        try:
            found = self.store.get(account)
        except NotFound:
            return None
        if not isinstance(found, MailAccount) or found.removed:
            return None
        return found

    def password(self, account: MailAccount) -> str:
        """The account's password in clear, for LOGIN only; raises SecretUnreadable."""
        return self.secrets.decrypt(account.password_encrypted)

    def synced(
        self, account: MailAccount, uidvalidity: int, last_uid: int, received: int, skipped: int
    ) -> Saved | None:
        """Records the sync when it changed anything (ConcurrencyConflict: the account was
        changed meanwhile, e.g. removed; Gone: it was removed)."""
        if not account.synced(uidvalidity, last_uid, received, skipped):
            return None
        return self.store.save(account)

    def failed(self, account: MailAccount, error: str) -> Saved | None:
        """Records the failure when it is not the one already recorded."""
        if not account.sync_failed(error):
            return None
        return self.store.save(account)
