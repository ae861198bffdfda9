"""IMAP accounts: a mailbox elsewhere whose new messages are imported into the owner's inbox.

One aggregate per (owner, host, user name, folder), its id derived from them
(`account_id`): connecting the same mailbox twice is a conflict, and connecting it again
after a removal reuses the account, its sync position and so its import keys (what was
imported before is not imported again).

The log records what the account is and what changed, never each poll: `ImapSynced` only
when messages came in, when UIDVALIDITY changed, or when the account's sync state changes
(its first sync, a recovery); `ImapSyncFailed` only when the error is new (a mailbox that
fails the same way every minute records it once). The password is stored encrypted only
(commands.mail_accounts.Secrets).
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.common import Conflict, Gone

SECURITIES = ("tls", "starttls", "none")
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
STATUSES = ("pending", "ok", "error")  # not synced yet, synced, the last sync failed
MAX_ERROR_CHARS = 500


def account_id(owner: str, host: str, username: str, folder: str) -> UUID:
    """The account's id: one per owner and mailbox (the host in lower case)."""
    return uuid5(NAMESPACE_URL, f"gbserver:imap:{owner}\n{host.lower()}\n{username}\n{folder}")


class MailAccount(Aggregate):
    TOPIC = "gbserver.mail_accounts.MailAccount"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.mail_accounts.MailAccount.Created"

    @event("ImapAccountConnected", topic="gbserver.mail_accounts.ImapAccountConnected")
    def __init__(
        self,
        owner: str,
        host: str,
        port: int,
        security: str,
        username: str,
        password_encrypted: str,
        folder: str,
        id: UUID | None = None,
    ) -> None:
        self.owner = owner
        self._settings(host, port, security, username, password_encrypted, folder)
        self.removed = False
        self.uidvalidity: int | None = None
        self.last_uid = 0
        self.status = "pending"
        self.last_error: str | None = None
        self.received = 0
        self.skipped = 0

    @classmethod
    def connect(
        cls,
        owner: str,
        host: str,
        port: int,
        security: str,
        username: str,
        password_encrypted: str,
        folder: str,
    ) -> MailAccount:
        return cls(
            owner=owner,
            host=host,
            port=port,
            security=security,
            username=username,
            password_encrypted=password_encrypted,
            folder=folder,
            id=account_id(owner, host, username, folder),
        )

    def _settings(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password_encrypted: str,
        folder: str,
    ) -> None:
        if security not in SECURITIES:
            raise ValueError(f"unknown security {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password_encrypted = password_encrypted
        self.folder = folder

    def is_owned_by(self, email: str) -> bool:
        return email == self.owner

    def reconnect(self, host: str, port: int, security: str, password_encrypted: str) -> None:
        """Connects a removed account again (new settings and password, same position)."""
        if not self.removed:
            raise Conflict(
                f"{self.username} on {self.host} ({self.folder}) is already connected as"
                f" account {self.id}; remove it first to change its settings"
            )
        self._reconnected(
            host=host, port=port, security=security, password_encrypted=password_encrypted
        )

    def remove(self) -> None:
        self._ensure_connected()
        self._removed()

    def position(self, uidvalidity: int) -> int:
        """The last UID imported under this UIDVALIDITY (0: start over, from UID 1)."""
        return self.last_uid if uidvalidity == self.uidvalidity else 0

    def synced(self, uidvalidity: int, last_uid: int, received: int, skipped: int) -> bool:
        """Records a sync up to `last_uid` when it changes anything; True when recorded."""
        self._ensure_connected()
        changed = (
            received > 0
            or skipped > 0
            or uidvalidity != self.uidvalidity
            or last_uid != self.last_uid
            or self.status != "ok"
        )
        if changed:
            self._synced(
                uidvalidity=uidvalidity, last_uid=last_uid, received=received, skipped=skipped
            )
        return changed

    def sync_failed(self, error: str) -> bool:
        """Records a failed sync unless it is the error already recorded; True when recorded."""
        self._ensure_connected()
        error = error[:MAX_ERROR_CHARS]
        if self.status == "error" and self.last_error == error:
            return False
        self._failed(error=error)
        return True

    def _ensure_connected(self) -> None:
        if self.removed:
            raise Gone(f"IMAP account {self.id} was removed")

    @event("ImapAccountReconnected", topic="gbserver.mail_accounts.ImapAccountReconnected")
    def _reconnected(self, host: str, port: int, security: str, password_encrypted: str) -> None:
        self._settings(host, port, security, self.username, password_encrypted, self.folder)
        self.removed = False
        self.status = "pending"
        self.last_error = None

    @event("ImapAccountRemoved", topic="gbserver.mail_accounts.ImapAccountRemoved")
    def _removed(self) -> None:
        self.removed = True

    @event("ImapSynced", topic="gbserver.mail_accounts.ImapSynced")
    def _synced(self, uidvalidity: int, last_uid: int, received: int, skipped: int) -> None:
        self.uidvalidity = uidvalidity
        self.last_uid = last_uid
        self.received += received
        self.skipped += skipped
        self.status = "ok"
        self.last_error = None

    @event("ImapSyncFailed", topic="gbserver.mail_accounts.ImapSyncFailed")
    def _failed(self, error: str) -> None:
        self.status = "error"
        self.last_error = error
