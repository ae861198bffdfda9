"""Incoming mail: an SMTP listener (GB_SMTP_LISTEN) that takes mail for this server's users
into their inbox.

aiosmtpd serves the protocol on an event loop of its own thread. A recipient is accepted
only when it is a local user (anyone else: `550 5.1.1`); a message larger than
GB_MAX_MAIL_MB is refused with `552`. The DATA reply `250` is sent only once the mail is
saved for every recipient (so that a crash never loses a mail the sender was told was
taken); when the store cannot take it the answer is `451`, and the sender tries again.
Each mail is saved under a key of its content, so a sender that tries again after a
partial save (or after a `451` that came too late) leaves one copy in each inbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from commands.mail import MailCommands
from commands.ports import BlobTooLarge, StoreUnavailable
from infra.readstore import PostgresReadStore, SQLiteReadStore
from infra.worker import Worker
from projections.mail import local_user

log = logging.getLogger("gbserver.mail")

WATCH_SECONDS = 1.0  # how often the worker checks that the listener still serves
READY_SECONDS = 5.0  # how long binding and the first exchange may take
MAX_RECIPIENTS = 100  # of one message: each is a copy saved in its inbox


class ListenerUnavailable(Exception):
    """GB_SMTP_LISTEN cannot be listened on (in use, not this host's address, not allowed)."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class InboundHandler:
    """aiosmtpd's handler: who may receive, and what becomes of a message."""

    def __init__(self, read: SQLiteReadStore | PostgresReadStore, mail: MailCommands) -> None:
        self.read = read
        self.mail = mail  # refuses a mail larger than its max_mail_bytes (BlobTooLarge)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        # RFC 5321 4.5.3.1.8: a server takes at least 100; every RCPT counts, repeated or
        # refused, so that no one message makes the server look up users without end.
        asked = getattr(envelope, "gb_recipients_asked", 0) + 1
        envelope.gb_recipients_asked = asked  # type: ignore[attr-defined]
        if asked > MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients; send the rest in another message"
        loop = asyncio.get_running_loop()
        try:
            known = await loop.run_in_executor(None, local_user, self.read, address)
        except Exception as e:  # noqa: BLE001 - the store is out of reach: try later
            log.warning("smtp: cannot look up recipient %s: %s", address, e)
            return "451 4.3.0 cannot look up the recipient now; try again later"
        if not known:
            return "550 5.1.1 no such user"
        if address.lower() not in (r.lower() for r in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.receive, recipients, raw)
        except BlobTooLarge:
            return "552 5.3.4 message too big"
        except StoreUnavailable as e:
            log.warning("smtp: cannot store a mail for %s: %s", ", ".join(recipients), e)
            return "451 4.3.0 the mailbox store is unavailable; try again later"
        except Exception:  # noqa: BLE001 - not taken: the sender keeps it and tries again
            log.exception("smtp: cannot store a mail for %s", ", ".join(recipients))
            return "451 4.3.0 local error in processing; try again later"
        return "250 OK"

    def receive(self, recipients: list[str], raw: bytes) -> None:
        """Saves the mail into each recipient's inbox (blocking: run in a thread)."""
        key = f"smtp:{hashlib.sha256(raw).hexdigest()}"
        for owner in recipients:
            mail_id = self.mail.receive(owner, raw, source="smtp", key=key)
            log.info("smtp: mail for %s %s", owner, mail_id or "(already received)")


class SmtpListener(Worker):
    """The listener as a worker: `start` binds (raising ListenerUnavailable at once, so that
    `serve` fails with one line), the worker's thread watches the listener and starts it
    again should its event loop end."""

    name = "smtp-listener"
    logger = log

    def __init__(
        self,
        address: tuple[str, int],
        read: SQLiteReadStore | PostgresReadStore,
        mail: MailCommands,
        limit: int,
    ) -> None:
        super().__init__()
        self.host, self.port = address
        self.handler = InboundHandler(read, mail)
        self.limit = limit  # aiosmtpd's data_size_limit: 552 past it
        self._controller: Controller | None = None

    @property
    def where(self) -> str:
        return _where(self.host, self.port)

    def start(self) -> None:
        self._listen()
        self.ready.set()
        super().start()

    def _listen(self) -> None:
        controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ready_timeout=READY_SECONDS,
            server_hostname=socket.gethostname(),
            ident="gbserver",
            data_size_limit=self.limit,
        )
        try:
            controller.start()
        except OSError as e:  # in use, not this host's address, not allowed
            self._discard(controller)
            # asyncio's message repeats the address; the errno's text is the reason.
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise ListenerUnavailable(
                f"cannot listen for mail on {self.where}: {reason[:1].lower()}{reason[1:]}"
                " (set GB_SMTP_LISTEN)"
            ) from None
        except Exception:
            self._discard(controller)
            raise
        self._controller = controller
        log.info("accepting mail on %s", self.where)

    @staticmethod
    def _discard(controller: Controller) -> None:
        """A controller whose start failed: stop its loop (or close it, its thread ended)."""
        loop: asyncio.AbstractEventLoop = controller.loop
        if loop.is_running():
            controller.stop(no_assert=True)
        elif not loop.is_closed():
            loop.close()

    def _serving(self) -> bool:
        controller = self._controller
        return controller is not None and controller.loop.is_running()

    def _step(self) -> None:
        if not self._serving():
            self._shut()
            self._listen()  # ListenerUnavailable: logged once, tried again after a backoff
        while not self._wait(WATCH_SECONDS):
            if not self._serving():
                raise RuntimeError(f"the SMTP listener on {self.where} stopped")

    def _shut(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        if controller.loop.is_running():
            controller.stop()
        else:
            self._discard(controller)

    def _close(self) -> None:
        self._shut()
