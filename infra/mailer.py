"""Outgoing mail: the worker that hands queued mail to the SMTP relay (GB_SMTP_HOST).

One process delivers at a time (the "mail delivery" lock of infra.locks); the others stand
by and take over when it goes. The worker looks for due mail (`due_deliveries`) twice a
second, hands each to the relay over one connection per batch, and records the outcome
(`delivered`, or `delivery_failed` with the relay's reply):

- the relay accepts (2xx after DATA): `sent`, with the relay's reply; recipients the relay
  refused while accepting others are named in that reply;
- the relay refuses for good (a 5xx reply to MAIL, to every RCPT, or to DATA): `failed`;
- anything else (a 4xx reply, a timeout, a refused or dropped connection, a TLS failure):
  tried again after GB_SMTP_RETRY_SECONDS, doubled on each attempt (at most 6 hours
  apart); `failed` after MAX_ATTEMPTS attempts.

Delivery is at least once: a process that dies after the relay accepted a mail but before
the outcome was saved hands it again to the relay when it (or a standby) takes over.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from commands.mail import MailCommands, Outgoing
from commands.ports import BlobMissing, NotFound, Saved, StoreUnavailable
from domain.common import rfc3339
from infra.config import Settings
from infra.locks import Lock, LockLost, lock_for
from infra.readstore import PostgresReadStore, SQLiteReadStore
from infra.runner import Consistency
from infra.smtp_inbound import SmtpListener
from infra.worker import Worker
from projections.mail import due_deliveries

if TYPE_CHECKING:
    from infra.areas import AreaContext

log = logging.getLogger("gbserver.mail")

MAX_ATTEMPTS = 8  # a mail the relay never took is failed after this many attempts
RETRY_CAP = timedelta(hours=6)  # the longest wait between two attempts
BATCH = 50  # mails handed to the relay over one connection
POLL_SECONDS = 0.5  # how often an idle worker looks for due mail
STANDBY_SECONDS = 2.0  # how often a standby tries to take the lock
SETTLE_SECONDS = 2.0  # how long to wait for the read model to show an outcome
SETTLED_HOLD = 600.0  # how long an outcome the read model does not show yet is remembered


def delivery_lock(settings: Settings) -> Lock:
    """One process delivers mail: a second one would hand each mail to the relay twice."""
    return lock_for(settings, "mail delivery")


@dataclass(frozen=True)
class Outcome:
    """What became of one attempt: delivered, or not (for good when `final`)."""

    delivered: bool
    reply: str
    final: bool = False


class RelayError(Exception):
    """The relay cannot take mail now: unreachable, timed out, the connection dropped,
    TLS or login failed. Every mail of the attempt is tried again later."""


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())  # a multi-line reply on one line


def _reply(code: int, reply: bytes | str) -> str:
    return f"{code} {_text(reply)}".strip()


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


_EOL = re.compile(rb"\r\n|\r|\n")


def _crlf(message: bytes) -> bytes:
    """SMTP's line ends (smtplib sends bytes as they are)."""
    return _EOL.sub(b"\r\n", message)


def _reason(e: BaseException) -> str:
    if isinstance(e, smtplib.SMTPResponseException):
        return _reply(e.smtp_code, e.smtp_error)
    if isinstance(e, TimeoutError):
        return f"timed out: {e}" if str(e) else "timed out"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class RelayConnection:
    """One SMTP session with the relay (GB_SMTP_HOST), for a batch of mails."""

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp

    @classmethod
    def open(cls, settings: Settings) -> RelayConnection:
        """Connects (TLS as GB_SMTP_SECURITY says) and logs in; raises RelayError."""
        host, port, timeout = settings.smtp_host, settings.smtp_port, settings.smtp_timeout
        smtp: smtplib.SMTP | None = None
        try:
            if settings.smtp_security == "tls":
                smtp = smtplib.SMTP_SSL(
                    host, port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
            smtp.ehlo()
            if settings.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
        except (smtplib.SMTPException, OSError) as e:  # ssl.SSLError is an OSError
            if smtp is not None:
                smtp.close()
            raise RelayError(f"relay {host}:{port}: {_reason(e)}") from e
        return cls(smtp)

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> Outcome:
        """One mail transaction (as smtplib's sendmail, keeping the relay's replies).
        Raises RelayError when the session breaks (the connection is of no more use)."""
        smtp = self.smtp
        message = _crlf(message)
        try:
            smtp.command_encoding = "ascii"  # SMTPUTF8 (below) is per transaction
            options: list[str] = []
            international = not (sender + "".join(recipients)).isascii()
            if smtp.does_esmtp:
                if smtp.has_extn("size"):
                    options.append(f"SIZE={len(message)}")
                if international and smtp.has_extn("smtputf8"):
                    options.append("SMTPUTF8")
                if (international or not message.isascii()) and smtp.has_extn("8bitmime"):
                    options.append("BODY=8BITMIME")
            if international and "SMTPUTF8" not in options:
                return Outcome(
                    False,
                    "the relay does not offer SMTPUTF8, which a non-ASCII address needs",
                    final=True,
                )
            code, reply = smtp.mail(sender, options)
            if code != 250:
                return self._refused(code, f"sender {sender} refused: {_reply(code, reply)}")
            refused: dict[str, tuple[int, str]] = {}
            for recipient in recipients:
                code, reply = smtp.rcpt(recipient)
                if code not in (250, 251):
                    refused[recipient] = (code, _reply(code, reply))
                    if code == 421:  # closing: nothing more in this session
                        return self._refused(code, _reply(code, reply))
            named = "; ".join(f"{r}: {text}" for r, (_, text) in refused.items())
            if len(refused) == len(recipients):
                self._reset()
                final = all(_is_permanent(code) for code, _ in refused.values())
                return Outcome(False, f"every recipient refused: {named}", final=final)
            try:
                code, reply = smtp.data(message)
            except smtplib.SMTPDataError as e:  # DATA itself refused (not 354)
                return self._refused(e.smtp_code, _reply(e.smtp_code, e.smtp_error))
            if code != 250:
                return self._refused(code, _reply(code, reply))
        except (smtplib.SMTPException, OSError) as e:
            self.close()
            raise RelayError(_reason(e)) from e
        accepted = _reply(code, reply)
        if refused:
            accepted += f"; refused: {named}"
        return Outcome(True, accepted)

    def _refused(self, code: int, text: str) -> Outcome:
        if code == 421:  # the relay closes the session
            self.close()
        else:
            self._reset()
        return Outcome(False, text, final=_is_permanent(code))

    def _reset(self) -> None:
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    @property
    def usable(self) -> bool:
        return self.smtp.sock is not None

    def close(self) -> None:
        self.smtp.close()

    def quit(self) -> None:
        if not self.usable:
            return
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()


def _now() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker(Worker):
    """Hands queued mail to the relay; records each outcome as an event."""

    name = "mail-delivery"
    logger = log

    def __init__(
        self,
        settings: Settings,
        read: SQLiteReadStore | PostgresReadStore,
        mail: MailCommands,
        lock: Lock,
        consistency: Consistency | None = None,
        *,
        clock: Callable[[], datetime] = _now,
        connect: Callable[[Settings], RelayConnection] = RelayConnection.open,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.read = read
        self.mail = mail
        self.consistency = consistency
        self.active = False  # holds the lock: this process delivers
        self._lock = lock
        self._clock = clock
        self._connect = connect
        # Mails whose outcome is saved but which the read model may still show as due:
        # id -> monotonic time until which they are left alone.
        self._settling: dict[str, float] = {}
        # Outcomes the relay gave that could not be saved yet (the store was out of reach):
        # saved before anything else, never handed to the relay again meanwhile.
        self._unsaved: dict[str, tuple[Outgoing, Outcome]] = {}

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, StoreUnavailable | psycopg.OperationalError | OSError)

    def _close(self) -> None:
        self._lock.release()  # a standby takes over at once
        self.active = False

    def _step(self) -> None:
        self.ready.set()  # standing by is taking part
        if not self._lock.acquire():
            self.active = False
            self._stop.wait(STANDBY_SECONDS)
            return
        if not self.active:
            self.active = True
            log.info(
                "mail delivery active (relay %s:%s)",
                self.settings.smtp_host,
                self.settings.smtp_port,
            )
        try:
            while not self._stop.is_set():
                self._lock.check()
                for out, outcome in list(self._unsaved.values()):
                    self._record(out, outcome)
                due = self._due()
                if due:
                    self._deliver(due)
                self._recovered()
                if not due:
                    self._stop.wait(POLL_SECONDS)
        except LockLost as e:  # not a failure: another process delivers now (or will)
            log.warning("mail delivery lost its lock (%s); standing by", e)
            self.active = False
            self._lock.release()

    def _due(self) -> list[str]:
        found = due_deliveries(self.read, rfc3339(self._clock()), BATCH)
        now = time.monotonic()
        # Forget what the read model no longer shows as due (or has had long enough to).
        listed = set(found)
        self._settling = {
            i: until for i, until in self._settling.items() if i in listed and until > now
        }
        return [i for i in found if i not in self._settling and i not in self._unsaved]

    def _deliver(self, due: Sequence[str]) -> None:
        """One batch over one connection. A relay that cannot be reached fails every mail
        of the batch (each is tried again on its own schedule)."""
        relay: RelayConnection | None = None
        down: str | None = None  # why the relay could not be reached, in this batch
        try:
            for mail_id in due:
                if self._stop.is_set():
                    return
                self._lock.check()  # a process that lost the lock hands nothing more over
                out = self._outgoing(mail_id)
                if out is None:
                    continue
                if not out.recipients:
                    self._record(out, Outcome(True, "no recipient outside this server"))
                    continue
                if relay is not None and not relay.usable:
                    relay = None
                if relay is None and down is None:
                    try:
                        relay = self._connect(self.settings)
                    except RelayError as e:
                        down = str(e)
                if relay is None:
                    outcome = Outcome(False, down or "the relay is unreachable")
                else:
                    try:
                        outcome = relay.send(
                            self.settings.smtp_from or out.sender, out.recipients, out.message
                        )
                    except RelayError as e:
                        relay = None  # the next mail connects again
                        outcome = Outcome(False, str(e))
                self._record(out, outcome)
        finally:
            if relay is not None:
                relay.quit()

    def _outgoing(self, mail_id: str) -> Outgoing | None:
        """The mail as the relay gets it; None (and dealt with) when it cannot be had."""
        try:
            return self.mail.outgoing(UUID(mail_id))
        except NotFound:  # not a sent mail: the read model is wrong, nothing to deliver
            log.error("mail %s is due for delivery but is not a sent mail; skipped", mail_id)
            self._settling[mail_id] = time.monotonic() + SETTLED_HOLD
        except BlobMissing as e:  # its content is gone: no attempt can ever succeed
            reply = f"the message's content is missing from the blob store ({e})"
            log.error("mail %s failed: %s", mail_id, reply)
            saved = self.mail.delivery_failed(UUID(mail_id), reply, final=True, retry_at=None)
            self._settle(mail_id, saved, SETTLED_HOLD)
        return None

    def _record(self, out: Outgoing, outcome: Outcome) -> None:
        """Saves the outcome of an attempt; kept to save again when the store fails."""
        mail_id = str(out.mail_id)
        self._unsaved[mail_id] = (out, outcome)
        saved, hold = self._save(out, outcome)
        del self._unsaved[mail_id]
        self._settle(mail_id, saved, hold)

    def _save(self, out: Outgoing, outcome: Outcome) -> tuple[Saved, float]:
        mail_id = str(out.mail_id)
        hold = SETTLED_HOLD
        if outcome.delivered:
            saved = self.mail.delivered(out.mail_id, outcome.reply)
            log.info("mail %s sent: %s", mail_id, outcome.reply)
        else:
            attempts = out.attempts + 1
            final = outcome.final or attempts >= MAX_ATTEMPTS
            retry_at: datetime | None = None
            if not final:
                seconds = self.settings.smtp_retry_seconds * 2.0 ** min(out.attempts, 64)
                delay = timedelta(seconds=min(seconds, RETRY_CAP.total_seconds()))
                retry_at = self._clock() + delay
                hold = min(hold, delay.total_seconds())
            saved = self.mail.delivery_failed(
                out.mail_id, outcome.reply, final=final, retry_at=retry_at
            )
            log.warning(
                "mail %s %s (attempt %d): %s",
                mail_id,
                "failed"
                if retry_at is None
                else f"not delivered, tried again at {rfc3339(retry_at)}",
                attempts,
                outcome.reply,
            )
        return saved, hold

    def _settle(self, mail_id: str, saved: Saved, hold: float) -> None:
        """Waits (briefly) for the read model to show the outcome; until it does, the mail
        is left alone, so that no mail is handed over twice."""
        shown = self.consistency is not None and self.consistency.wait(saved, SETTLE_SECONDS)
        if not shown:
            self._settling[mail_id] = time.monotonic() + hold


def mail_workers(ctx: AreaContext, mail: MailCommands) -> list[Worker]:
    """The mail area's worker: delivery when a relay is configured (GB_SMTP_HOST)."""
    s = ctx.settings
    if not s.smtp_host:
        return []
    return [DeliveryWorker(s, ctx.read, mail, delivery_lock(s), ctx.consistency)]


def mail_listeners(ctx: AreaContext, mail: MailCommands) -> list[Worker]:
    """The SMTP listener for the users' incoming mail, when GB_SMTP_LISTEN is set."""
    s = ctx.settings
    address = s.smtp_listen_address()
    if address is None:
        return []
    return [SmtpListener(address, ctx.read, mail, s.max_mail_mb * 1024 * 1024)]
