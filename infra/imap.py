"""The IMAP sync: a worker that brings new messages of connected IMAP accounts into their
owners' inboxes, exactly once, across restarts.

Every `GB_IMAP_POLL_SECONDS` (and within a second of an account being connected, in any
process: the worker looks for new accounts in the read model every second), each account
is synced on a thread of its own (at most PARALLEL at a time, so a slow or unreachable
server never holds up the others): connect (TLS, STARTTLS or plain, with a timeout),
LOGIN, EXAMINE the folder (read-only: nothing on the server changes, not even \\Seen),
read UIDVALIDITY, `UID SEARCH UID <last+1>:*`, then fetch the new messages by UID in
batches and hand each to MailCommands.receive with the key
`imap:<account>:<uidvalidity>:<uid>`: a message received twice (a crash between the
import and the recorded position, two processes) is saved once. After each batch the
position is recorded (ImapSynced). A changed UIDVALIDITY starts the folder over from UID 1
(the keys differ, so nothing collides). Messages over GB_MAX_MAIL_MB are skipped (counted,
never fetched).

A failing account (wrong password, host out of reach, folder missing) is logged and
recorded once per distinct error (ImapSyncFailed; the API shows `status` and `last_error`)
and retried with a growing pause (up to RETRY_CAP); the others go on. One process syncs
at a time: the worker holds the lock `imap-sync` (infra.locks) while it runs.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import imaplib
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import psycopg

from commands.mail_accounts import AccountSync, SecretUnreadable
from commands.ports import BlobTooLarge, ConcurrencyConflict, StoreUnavailable
from domain.common import DomainError
from domain.mail_accounts import MailAccount
from infra.locks import Lock, LockLost, lock_for
from infra.secrets import FernetSecrets
from infra.worker import Worker
from projections.mail_accounts import accounts_to_sync

if TYPE_CHECKING:
    from infra.areas import AreaContext

log = logging.getLogger("gbserver.imap")

PARALLEL = 4  # accounts synced at once
TICK = 1.0  # seconds between looks for due (and new) accounts
LOCK_RETRY = 5.0  # seconds between tries to take the lock another process holds
LOCK_CHECK = 5.0  # seconds between checks that the lock is still held
STOP_WAIT = 5.0  # seconds `stop` waits for the syncs under way
RETRY_CAP = 1800.0  # the longest pause before retrying a failing account (seconds)
SIZE_CHUNK = 100  # UIDs whose sizes are asked at once
FETCH_COUNT = 20  # messages fetched at once, at most...
FETCH_BYTES = 16 * 1024 * 1024  # ...and at most this many bytes (one larger message alone)
MAX_ERROR_CHARS = 300


class Inbox(Protocol):
    """Where messages go (commands.mail.MailCommands)."""

    def receive(
        self, owner: str, raw: bytes, *, source: str, key: str | None = None
    ) -> str | None: ...


class ImapProblem(Exception):
    """A sync step failed: the server refused it, or could not be reached (in words)."""


class ImportFailed(ImapProblem):
    """A fetched message could not be imported (a bug of ours, logged with its trace)."""


# --- one connection ---------------------------------------------------------------------


def quoted(text: str) -> str:
    """An IMAP quoted string (RFC 3501): text without CR/LF, `\\` and `"` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_name(folder: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): printable ASCII as itself
    (`&` as `&-`), anything else base64 of UTF-16BE between `&` and `-`."""
    out: list[str] = []
    wide: list[str] = []

    def flush() -> None:
        if wide:
            data = "".join(wide).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            wide.clear()

    for ch in folder:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            wide.append(ch)
    flush()
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _said(exc: BaseException) -> str:
    """An error in words: imaplib's carry the server's bytes, OSError's its errno text."""
    if isinstance(exc, imaplib.IMAP4.error) and exc.args:
        return _text(exc.args[0])
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _answer(data: Sequence[Any]) -> str:
    """The text of a server's tagged answer (the last line imaplib kept)."""
    for item in reversed(data or ()):
        if isinstance(item, bytes | str) and item:
            return _text(item)
    return "no reason given"


_UID = re.compile(rb"(?:^|[ (])UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def parse_sizes(data: Sequence[Any]) -> dict[int, int]:
    """UID -> size from the answer to `UID FETCH ... (UID RFC822.SIZE)`."""
    sizes: dict[int, int] = {}
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        uid, size = _UID.search(line), _SIZE.search(line)
        if uid and size:
            sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def parse_bodies(data: Sequence[Any]) -> dict[int, bytes]:
    """UID -> message from the answer to `UID FETCH ... (UID BODY.PEEK[])`: imaplib gives
    each message as (its response's head, the literal), then the rest of the response (where
    a server may put the UID instead); unsolicited FETCH responses (flags) are skipped."""
    found: dict[int, bytes] = {}
    pending: bytes | None = None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            head, body = item
            if not isinstance(body, bytes):
                continue
            uid = _UID.search(head) if isinstance(head, bytes) else None
            if uid:
                found[int(uid.group(1))] = body
                pending = None
            else:
                pending = body
        elif isinstance(item, bytes) and pending is not None:
            uid = _UID.search(item)
            if uid:
                found[int(uid.group(1))] = pending
            pending = None
    return found


def uid_set(uids: Sequence[int]) -> str:
    """A UID set with runs collapsed: 1:3,7,9:10."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in [*uids[1:], None]:
        if uid is not None and uid == prev + 1:
            prev = uid
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        if uid is not None:
            start = prev = uid
    return ",".join(parts)


def vetted_address(host: str, port: int, allow_private: bool) -> tuple[str, int]:
    """Where to connect for host:port: its first address that is public (any, with
    `allow_private`). A user names the host, so without this one could make the server
    connect into its own network (loopback, private, link-local, metadata addresses)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ImapProblem(f"cannot resolve {host}: {_said(e)}") from e
    for *_, sockaddr in found:
        address = str(sockaddr[0])
        if allow_private or ipaddress.ip_address(address.split("%", 1)[0]).is_global:
            return address, port
    raise ImapProblem(
        f"{host} is not a public address: IMAP accounts reach public servers only"
        " (GB_IMAP_ALLOW_PRIVATE=1 allows private ones)"
    )


class _Plain(imaplib.IMAP4):
    """imaplib's client, connected to an address vetted beforehand (no second lookup)."""

    def __init__(self, address: tuple[str, int], host: str, timeout: float) -> None:
        self._address = address
        super().__init__(host, address[1], timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(self._address, timeout)


class _Tls(imaplib.IMAP4_SSL):
    """The same over implicit TLS (the certificate is checked against the host's name)."""

    def __init__(self, address: tuple[str, int], host: str, timeout: float) -> None:
        self._address = address
        super().__init__(
            host, address[1], ssl_context=ssl.create_default_context(), timeout=timeout
        )

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection(self._address, timeout)
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(sock, server_hostname=self.host)


class ImapSession:
    """One connection to an account's server, through imaplib, every step with a timeout and
    its failure said as ImapProblem."""

    def __init__(
        self, host: str, port: int, security: str, timeout: float, allow_private: bool = False
    ) -> None:
        where = f"{host}:{port}"
        address = vetted_address(host, port, allow_private)
        try:
            if security == "tls":
                self.imap: imaplib.IMAP4 = _Tls(address, host, timeout)
            else:
                self.imap = _Plain(address, host, timeout)
        except (imaplib.IMAP4.error, OSError, UnicodeError) as e:
            raise ImapProblem(f"cannot connect to {where}: {_said(e)}") from e
        if security == "starttls":
            try:
                self.imap.starttls(ssl.create_default_context())
            except (imaplib.IMAP4.error, OSError) as e:
                self.close()
                raise ImapProblem(f"STARTTLS with {where} failed: {_said(e)}") from e

    def _run(self, what: str, call: Callable[[], tuple[str, Any]]) -> Any:
        try:
            typ, data = call()
        except (imaplib.IMAP4.error, OSError) as e:
            raise ImapProblem(f"{what} failed: {_said(e)}") from e
        if typ != "OK":
            raise ImapProblem(f"{what} refused: {_answer(data)}")
        return data

    def login(self, username: str, password: str) -> None:
        if username.isascii() and password.isascii():
            call: Callable[[], tuple[str, Any]] = lambda: self.imap.login(  # noqa: E731
                quoted(username), password
            )
        else:  # SASL PLAIN carries UTF-8; LOGIN's quoted strings are ASCII
            plain = b"\0" + username.encode() + b"\0" + password.encode()
            call = lambda: self.imap.authenticate("PLAIN", lambda _: plain)  # noqa: E731
        self._run("login", call)

    def examine(self, folder: str) -> int:
        """Opens the folder read-only; answers its UIDVALIDITY."""
        name = quoted(mailbox_name(folder))
        self._run(f"opening folder {folder!r}", lambda: self.imap.select(name, readonly=True))
        _, codes = self.imap.response("UIDVALIDITY")
        if not codes or codes[0] is None:
            data = self._run(
                f"STATUS of folder {folder!r}", lambda: self.imap.status(name, "(UIDVALIDITY)")
            )
            codes = [m.group(1) for m in re.finditer(rb"UIDVALIDITY (\d+)", b" ".join(data))]
        try:
            return int(codes[0])
        except (IndexError, TypeError, ValueError):
            raise ImapProblem(f"folder {folder!r} has no UIDVALIDITY") from None

    def uids_after(self, last: int) -> list[int]:
        """The UIDs above `last`, in order (`n:*` names the last message even when n is
        past it: that one is dropped here)."""
        data = self._run("search", lambda: self.imap.uid("SEARCH", "UID", f"{last + 1}:*"))
        uids = {int(n) for line in data if isinstance(line, bytes) for n in line.split()}
        return sorted(uid for uid in uids if uid > last)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        data = self._run(
            "fetch", lambda: self.imap.uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)")
        )
        return parse_sizes(data)

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        data = self._run(
            "fetch", lambda: self.imap.uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])")
        )
        wanted = set(uids)
        return {uid: raw for uid, raw in parse_bodies(data).items() if uid in wanted}

    def close(self) -> None:
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                self.imap.shutdown()


Connect = Callable[[str, int, str, float], ImapSession]


@dataclass(frozen=True)
class Group:
    """A unit of a sync: the messages to fetch, and the position it reaches."""

    fetch: list[int]
    upto: int
    skipped: int


def groups(uids: Sequence[int], sizes: dict[int, int], max_bytes: int) -> Iterator[Group]:
    """The UIDs (with their sizes) as fetches of at most FETCH_COUNT messages and
    FETCH_BYTES; messages over `max_bytes` are skipped, gone ones (no size) left out."""
    fetch: list[int] = []
    total = skipped = 0
    upto = 0
    for uid in uids:
        size = sizes.get(uid)
        if fetch and (
            len(fetch) >= FETCH_COUNT or (size is not None and total + size > FETCH_BYTES)
        ):
            yield Group(fetch, upto, skipped)
            fetch, total, skipped = [], 0, 0
        upto = uid
        if size is None:
            continue
        if size > max_bytes:
            skipped += 1
            continue
        fetch.append(uid)
        total += size
    if fetch or skipped or upto:
        yield Group(fetch, upto, skipped)


# --- the worker -------------------------------------------------------------------------


@dataclass
class _Due:
    account_id: str
    due: float = 0.0  # time.monotonic() when it is next synced
    failures: int = 0  # syncs failed in a row


class ImapSync(Worker):
    name = "imap-sync"

    def __init__(
        self,
        accounts: Callable[[], list[tuple[str, str]]],
        sync: AccountSync,
        inbox: Inbox,
        lock: Lock,
        *,
        poll: float,
        max_mail_bytes: int,
        timeout: float = 30.0,
        connect: Connect = ImapSession,
    ) -> None:
        super().__init__()
        self.accounts = accounts  # (id, connected_at) of every connected account
        self.sync = sync
        self.inbox = inbox
        self.lock = lock
        self.poll = poll
        self.max_mail_bytes = max_mail_bytes
        self.timeout = timeout
        self.connect = connect
        self.tick = max(0.05, min(TICK, poll))
        self._mutex = threading.Lock()
        self._schedule: dict[str, _Due] = {}  # by "id connected_at"
        self._running: set[str] = set()
        self._logged: dict[str, str] = {}  # account id -> the error logged for it

    def _is_outage(self, exc: Exception) -> bool:
        # The lock's own connection fails with psycopg's error while PostgreSQL is down.
        return isinstance(exc, StoreUnavailable | LockLost | psycopg.OperationalError | OSError)

    def _close(self) -> None:
        """Gives the syncs under way a moment to end (each stops after its current batch)
        before the stores close under them."""
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            with self._mutex:
                if not self._running:
                    return
            time.sleep(0.05)

    def _step(self) -> None:
        self.ready.set()  # nothing to join: serving need not wait for this worker
        if not self.lock.acquire():
            self._wait(LOCK_RETRY)  # another process syncs
            return
        try:
            checked = time.monotonic()
            while True:
                if time.monotonic() - checked >= LOCK_CHECK:
                    self.lock.check()
                    checked = time.monotonic()
                self._start_due(self.accounts())
                self._recovered()
                if self._wait(self.tick):
                    return
        finally:
            self.lock.release()

    def _start_due(self, listed: list[tuple[str, str]]) -> None:
        now = time.monotonic()
        current = {f"{ident} {connected_at}": ident for ident, connected_at in listed}
        with self._mutex:
            for key in [k for k in self._schedule if k not in current]:
                del self._schedule[key]  # removed (or reconnected: a new key)
            connected = set(current.values())
            for ident in list(self._logged):  # (a copy: syncs change it meanwhile)
                if ident not in connected:
                    self._logged.pop(ident, None)
            for key, ident in current.items():
                entry = self._schedule.setdefault(key, _Due(ident))
                if entry.due > now or key in self._running or len(self._running) >= PARALLEL:
                    continue
                self._running.add(key)
                threading.Thread(
                    target=self._run_one,
                    args=(key, entry),
                    name=f"imap-sync-{ident[:8]}",
                    daemon=True,  # a sync mid-way at exit is redone (exactly once) next time
                ).start()

    def _run_one(self, key: str, entry: _Due) -> None:
        ok = False
        try:
            ok = self.sync_account(entry.account_id)
        except StoreUnavailable as e:
            log.warning("IMAP sync of account %s waits for the store: %s", entry.account_id, e)
        except Exception:  # noqa: BLE001 - one account's failure never stops the others
            log.exception("IMAP sync of account %s failed", entry.account_id)
        finally:
            with self._mutex:
                entry.failures = 0 if ok else entry.failures + 1
                pause = self.poll
                if entry.failures:
                    pause = min(self.poll * 2 ** (entry.failures - 1), max(self.poll, RETRY_CAP))
                entry.due = time.monotonic() + pause
                self._running.discard(key)

    def sync_account(self, account_id: str) -> bool:
        """Syncs one account; False when it failed (recorded and logged once)."""
        account = self.sync.load(UUID(account_id))
        if account is None:
            return True  # removed meanwhile
        password: str | None = None
        try:
            password = self.sync.password(account)
            self._import(account, password)
        except (ImapProblem, SecretUnreadable) as e:
            error = _scrubbed(str(e), password)
            self._failed_account(account, error, e if isinstance(e, ImportFailed) else None)
            return False
        except (ConcurrencyConflict, DomainError):
            return True  # the account changed meanwhile (removed, reconnected): next time
        if self._logged.pop(account_id, None) is not None:
            log.info("IMAP account %s (%s) syncs again", account_id, account.host)
        return True

    def _import(self, account: MailAccount, password: str) -> None:
        session = self.connect(account.host, account.port, account.security, self.timeout)
        try:
            session.login(account.username, password)
            uidvalidity = session.examine(account.folder)
            last = account.position(uidvalidity)
            uids = session.uids_after(last)
            if not uids:
                self.sync.synced(account, uidvalidity, last, 0, 0)  # a state change only
                return
            for start in range(0, len(uids), SIZE_CHUNK):
                chunk = uids[start : start + SIZE_CHUNK]
                for group in groups(chunk, session.sizes(chunk), self.max_mail_bytes):
                    if self._stop.is_set():
                        return
                    received, skipped = self._receive(
                        account, uidvalidity, session.fetch(group.fetch) if group.fetch else {}
                    )
                    self.sync.synced(
                        account, uidvalidity, group.upto, received, group.skipped + skipped
                    )
        finally:
            session.close()

    def _receive(
        self, account: MailAccount, uidvalidity: int, messages: dict[int, bytes]
    ) -> tuple[int, int]:
        """Hands the messages to the inbox in UID order: (received, skipped as too large).
        One received before (the sync stopped before its position was recorded) counts as
        received: it is in the inbox, once."""
        received = skipped = 0
        for uid in sorted(messages):
            try:
                self.inbox.receive(
                    account.owner,
                    messages[uid],
                    source=f"imap:{account.id}",
                    key=f"imap:{account.id}:{uidvalidity}:{uid}",
                )
            except BlobTooLarge:
                skipped += 1
                continue
            except ConcurrencyConflict:
                pass  # received by another process at the same moment
            except StoreUnavailable:
                raise
            except Exception as e:  # noqa: BLE001 - said as the account's error
                raise ImportFailed(
                    f"importing message UID {uid} failed: {type(e).__name__}: {e}"
                ) from e
            received += 1
        return received, skipped

    def _failed_account(
        self, account: MailAccount, error: str, bug: Exception | None = None
    ) -> None:
        ident = str(account.id)
        if self._logged.get(ident) != error:
            self._logged[ident] = error
            log.warning(
                "IMAP account %s (%s:%s) cannot be synced: %s",
                ident,
                account.host,
                account.port,
                error,
                exc_info=bug,
            )
        with contextlib.suppress(ConcurrencyConflict, DomainError):
            self.sync.failed(account, error)  # (not when removed or reconnected meanwhile)


# Timings some servers add to their answers ("(0.001 + 0.000 secs)"): without them, the same
# failure is the same error, recorded once.
_TIMINGS = re.compile(r" ?\([0-9.]+(?: \+ [0-9.]+)* secs?\)")


def _scrubbed(error: str, password: str | None) -> str:
    """The error as shown and logged: one line, short, never holding the password."""
    text = _TIMINGS.sub("", " ".join(error.split()))
    if password and len(password) >= 3:
        text = text.replace(password, "***")
    return text[:MAX_ERROR_CHARS]


def imap_workers(ctx: AreaContext, inbox: Inbox) -> list[Worker]:
    """The IMAP sync of the mail_accounts area (infra.areas), filing into `inbox`."""
    s = ctx.settings
    read = ctx.read
    return [
        ImapSync(
            lambda: accounts_to_sync(read),
            AccountSync(ctx.events, FernetSecrets(s)),
            inbox,
            lock_for(s, "imap-sync"),
            poll=s.imap_poll_seconds,
            max_mail_bytes=s.max_mail_mb * 1024 * 1024,
            connect=functools.partial(ImapSession, allow_private=s.imap_allow_private),
        )
    ]
