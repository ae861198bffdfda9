"""Mail over SMTP, end to end: a real relay (aiosmtpd in this process) that accepts, refuses,
defers, goes away or never answers; and real messages sent with smtplib into a server's
listener (GB_SMTP_LISTEN)."""

from __future__ import annotations

import base64
import contextlib
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from infra.config import Settings
from infra.mailer import RelayConnection
from tests.profiles import Profile
from tests.server import ADMIN_TOKEN, ROOT, ServerProcess, UserClient, free_port

SUBJECT = "Relatório de março — ünïcödé ✓ 日本語"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


# --- the relay -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Relay:
    """A real SMTP server on loopback that records what it accepts. `data_reply` (e.g. a
    550 or 451) answers DATA instead of accepting; `refuse` answers RCPT for an address."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self.data_reply: str | None = None
        self.refuse: dict[str, str] = {}
        self.transactions = 0  # DATA commands answered, accepted or not
        self._controller: Controller | None = None
        self._lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self._lock:
            self.transactions += 1
            if self.data_reply is not None:
                return self.data_reply
            assert envelope.mail_from is not None and envelope.original_content is not None
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
            return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def start(self) -> Relay:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def with_subject(self, subject: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.message["subject"] == subject]


@pytest.fixture
def relay() -> Iterator[Relay]:
    found = Relay().start()
    yield found
    found.stop()


class BlackHole:
    """A port that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


# --- helpers ---------------------------------------------------------------------------------


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def mail_env(relay_port: int, **extra: str) -> dict[str, str]:
    return {
        "GB_SMTP_HOST": "127.0.0.1",
        "GB_SMTP_PORT": str(relay_port),
        "GB_SMTP_SECURITY": "none",
        "GB_SMTP_RETRY_SECONDS": "0.3",
        "GB_SMTP_TIMEOUT": "2",
        **extra,
    }


def user(srv: ServerProcess, email: str) -> UserClient:
    with srv.client() as admin:
        r = admin.post("/api/admin/tokens", json={"user": email, "role": "user"})
        assert r.status_code == 201, r.text
        return srv.client(r.json()["token"], email)


def send(client: UserClient, **body: Any) -> str:
    r = client.post("/api/email/send", json=body)
    assert r.status_code in (201, 202), r.text
    return str(r.json()["id"]) if r.status_code == 201 else r.headers["Location"].rsplit("/")[-1]


def mail_of(client: UserClient, mail_id: str) -> dict[str, Any]:
    r = client.get(f"/api/email/{mail_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def status_becomes(client: UserClient, mail_id: str, status: str, timeout: float = 30.0) -> Any:
    return eventually(
        lambda: (m := mail_of(client, mail_id))["status"] == status and m,
        f"mail {mail_id} to be {status}",
        timeout,
    )


def attempted(client: UserClient, mail_id: str, attempts: int) -> Any:
    """The mail once at least `attempts` deliveries of it failed."""
    return eventually(
        lambda: (m := mail_of(client, mail_id))["attempts"] >= attempts and m,
        f"{attempts} failed attempts to deliver mail {mail_id}",
    )


def inbox(client: UserClient) -> list[dict[str, Any]]:
    r = client.get("/api/email/inbox", params={"limit": 200})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["data"]
    return items


def in_inbox(client: UserClient, subject: str, timeout: float = 30.0) -> dict[str, Any]:
    found = eventually(
        lambda: [m for m in inbox(client) if m["subject"] == subject],
        f"{subject!r} in {client.email}'s inbox",
        timeout,
    )
    assert len(found) == 1, found
    return mail_of(client, found[0]["id"])


# --- outgoing --------------------------------------------------------------------------------


def test_the_relay_gets_the_exact_mail_and_it_is_sent(
    fresh_server: Callable[..., ServerProcess], relay: Relay
) -> None:
    srv = fresh_server(**mail_env(relay.port))
    alice = user(srv, "alice@example.com")
    mail_id = send(
        alice,
        to=["bob@remote.example"],
        cc=["carol@remote.example"],
        bcc=["hidden@remote.example"],
        subject=SUBJECT,
        body="Olá Bob,\nsegue o relatório — com acentuação.\n.\nUma linha com ponto.",
        attachments=[
            {
                "filename": "relatório.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(PDF).decode(),
            }
        ],
    )
    sent = status_becomes(alice, mail_id, "sent")
    assert sent["last_reply"].startswith("250 2.0.0 Ok: queued as Q")
    [got] = relay.received
    assert got.mail_from == "alice@example.com"
    assert sorted(got.rcpt_tos) == [
        "bob@remote.example",
        "carol@remote.example",
        "hidden@remote.example",
    ]
    msg = got.message
    assert msg["subject"] == SUBJECT
    assert msg["from"] == "alice@example.com"
    assert msg["to"] == "bob@remote.example" and msg["cc"] == "carol@remote.example"
    assert "bcc" not in msg and b"hidden@remote.example" not in got.content
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == (
        "Olá Bob,\nsegue o relatório — com acentuação.\n.\nUma linha com ponto.\n"
    )
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "relatório.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == PDF
    assert msg["message-id"] == sent["message_id"]
    time.sleep(1.0)  # nothing more goes to the relay
    assert len(relay.received) == 1 and relay.transactions == 1


def test_a_permanent_refusal_fails_the_mail_with_the_relays_reply(
    fresh_server: Callable[..., ServerProcess], relay: Relay
) -> None:
    srv = fresh_server(**mail_env(relay.port))
    alice = user(srv, "alice@example.com")
    relay.data_reply = "550 5.7.1 message refused as spam"
    spam = send(alice, to=["bob@remote.example"], subject="spam", body="buy")
    failed = status_becomes(alice, spam, "failed")
    assert "550 5.7.1 message refused as spam" in failed["last_reply"]
    assert relay.transactions == 1  # never tried again

    relay.data_reply = None
    relay.refuse["nobody@remote.example"] = "550 5.1.1 no such mailbox here"
    lost = send(alice, to=["nobody@remote.example"], subject="nobody", body="hi")
    failed = status_becomes(alice, lost, "failed")
    assert "nobody@remote.example" in failed["last_reply"]
    assert "550 5.1.1 no such mailbox here" in failed["last_reply"]

    # Some recipients refused, others taken: sent to those, the refused named in the reply.
    partial = send(
        alice, to=["bob@remote.example", "nobody@remote.example"], subject="partial", body="x"
    )
    sent = status_becomes(alice, partial, "sent")
    assert sent["last_reply"].startswith("250 ")
    assert "nobody@remote.example: 550 5.1.1 no such mailbox here" in sent["last_reply"]
    [got] = relay.with_subject("partial")
    assert got.rcpt_tos == ["bob@remote.example"]


def test_a_temporary_refusal_is_retried_until_the_relay_takes_it(
    fresh_server: Callable[..., ServerProcess], relay: Relay
) -> None:
    srv = fresh_server(**mail_env(relay.port))
    alice = user(srv, "alice@example.com")
    relay.data_reply = "451 4.3.0 greylisted, try again later"
    mail_id = send(alice, to=["bob@remote.example"], subject="greylisted", body="hello")
    waiting = attempted(alice, mail_id, 2)
    assert waiting["status"] == "queued"
    assert "451 4.3.0 greylisted" in waiting["last_reply"]
    assert waiting["next_attempt_at"]
    relay.data_reply = None
    status_becomes(alice, mail_id, "sent")
    assert len(relay.with_subject("greylisted")) == 1


def test_a_relay_outage_delays_delivery_and_loses_nothing(
    fresh_server: Callable[..., ServerProcess], relay: Relay
) -> None:
    srv = fresh_server(**mail_env(relay.port))
    alice = user(srv, "alice@example.com")
    relay.stop()
    ids = [
        send(alice, to=[f"r{i}@remote.example"], subject=f"outage {i}", body=f"mail {i}")
        for i in range(3)
    ]
    for mail_id in ids:
        down = attempted(alice, mail_id, 1)
        assert down["status"] == "queued"
        assert "refused" in down["last_reply"].lower(), down["last_reply"]
    relay.start()
    for mail_id in ids:
        status_becomes(alice, mail_id, "sent")
    time.sleep(1.0)
    for i in range(3):
        [got] = relay.with_subject(f"outage {i}")  # each once: nothing lost, no duplicate
        assert got.rcpt_tos == [f"r{i}@remote.example"]
    assert len(relay.received) == 3


def test_a_relay_that_never_answers_is_retried_and_nothing_is_lost(
    fresh_server: Callable[..., ServerProcess], relay: Relay
) -> None:
    hole = BlackHole()
    try:
        srv = fresh_server(**mail_env(hole.port, GB_SMTP_TIMEOUT="1"))
        alice = user(srv, "alice@example.com")
        mail_id = send(alice, to=["bob@remote.example"], subject="patience", body="hello")
        waiting = attempted(alice, mail_id, 2)
        assert waiting["status"] == "queued"
        assert "timed out" in waiting["last_reply"], waiting["last_reply"]
        assert len(hole.accepted) >= 2
        # The queue outlives the server: restarted with a relay that answers, it delivers.
        srv.stop()
        srv.env["GB_SMTP_PORT"] = str(relay.port)
        srv.start()
        status_becomes(alice, mail_id, "sent")
        [got] = relay.with_subject("patience")
        assert got.rcpt_tos == ["bob@remote.example"]
    finally:
        hole.close()


def test_one_process_delivers_and_a_standby_takes_over(
    profile: Profile, fresh_server: Callable[..., ServerProcess], relay: Relay, tmp_path: Path
) -> None:
    if not profile.scaled:
        pytest.skip("the embedded profile runs one server per data directory")
    first = fresh_server(**mail_env(relay.port, GB_LOG_LEVEL="info"))
    shared = {k: v for k, v in first.env.items() if k != "GB_DATA_DIR"}
    second = ServerProcess(tmp_path / "second", shared).start()
    try:
        alice = user(first, "alice@example.com")
        ids = [
            send(alice, to=[f"r{i}@remote.example"], subject=f"batch {i}", body="x")
            for i in range(12)
        ]
        for mail_id in ids:
            status_becomes(alice, mail_id, "sent")
        time.sleep(1.0)
        assert sorted(r.message["subject"] for r in relay.received) == sorted(
            f"batch {i}" for i in range(12)
        )  # each once, though two processes could deliver
        servers = (first, second)
        holders = [s for s in servers if "mail delivery active" in s.log_path.read_text()]
        assert len(holders) == 1
        standby = second if holders[0] is first else first
        holders[0].kill()
        token = alice.headers["Authorization"].removeprefix("Bearer ")
        with standby.client(token, alice.email) as again:
            late = send(again, to=["late@remote.example"], subject="after failover", body="y")
            status_becomes(again, late, "sent")
        assert len(relay.with_subject("after failover")) == 1
        assert "mail delivery active" in standby.log_path.read_text()
    finally:
        second.stop()


def test_the_relay_connection_keeps_the_replies_of_one_transaction(relay: Relay) -> None:
    """The worker's SMTP session alone: replies classified as the worker records them."""
    settings = Settings(
        smtp_host="127.0.0.1", smtp_port=relay.port, smtp_security="none", smtp_timeout=5
    )
    conn = RelayConnection.open(settings)
    try:
        message = b"Subject: one\r\nFrom: a@example.com\r\n\r\n.leading dot\r\nbody\r\n"
        ok = conn.send("a@example.com", ["b@remote.example"], message)
        assert ok.delivered and ok.reply == "250 2.0.0 Ok: queued as Q1"
        assert relay.received[0].content.endswith(b".leading dot\r\nbody\r\n")
        relay.refuse["x@remote.example"] = "450 4.2.1 mailbox busy"
        relay.refuse["y@remote.example"] = "550 5.1.1 unknown"
        mixed = conn.send("a@example.com", ["x@remote.example", "y@remote.example"], message)
        assert not mixed.delivered and not mixed.final  # one of them may take it later
        assert "x@remote.example: 450 4.2.1 mailbox busy" in mixed.reply
        gone = conn.send("a@example.com", ["y@remote.example"], message)
        assert not gone.delivered and gone.final
        relay.data_reply = "452 4.3.1 insufficient storage"
        full = conn.send("a@example.com", ["b@remote.example"], message)
        assert (full.delivered, full.final, full.reply) == (
            False,
            False,
            "452 4.3.1 insufficient storage",
        )
        relay.data_reply = None
        again = conn.send("a@example.com", ["b@remote.example"], b"Subject: two\n\nbare LF\n")
        assert again.delivered and again.reply.endswith("Q2")  # the same session, reset
        assert relay.received[1].content == b"Subject: two\r\n\r\nbare LF\r\n"
    finally:
        conn.quit()


# --- incoming --------------------------------------------------------------------------------


def listener_env(**extra: str) -> tuple[int, dict[str, str]]:
    port = free_port()
    return port, {"GB_SMTP_LISTEN": f"127.0.0.1:{port}", **extra}


def mixed_message(to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Zoë Remote <zoe@remote.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<mixed-1@remote.example>"
    msg.set_content("Olá! O anexo segue.\nAté já.\n")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="cotação.pdf")
    return msg


def alternative_message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "news@remote.example"
    msg["To"] = to
    msg["Subject"] = "Alternative"
    msg.set_content("Plain version of the news.\n")
    msg.add_alternative("<p>HTML <b>version</b><script>alert(1)</script></p>", subtype="html")
    return msg


def test_mail_sent_to_the_listener_arrives_in_the_inbox(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    port, env = listener_env(GB_MAX_MAIL_MB="1")
    srv = fresh_server(**env)
    alice = user(srv, "alice-in@example.com")
    # Encoded words (quoted-printable and base64), as a sender writes them by hand.
    subject = "=?utf-8?q?Cota=C3=A7=C3=A3o_=C3=BC?= =?utf-8?b?4pyT?="
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        msg = mixed_message("Alice <Alice-In@Example.com>", SUBJECT)
        refused = smtp.send_message(msg, to_addrs=["Alice-In@Example.com"])
        assert refused == {}
        smtp.send_message(alternative_message("alice-in@example.com"))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as nobody:
            smtp.sendmail("zoe@remote.example", ["nobody@example.com"], b"Subject: x\r\n\r\nx")
        assert nobody.value.recipients["nobody@example.com"] == (550, b"5.1.1 no such user")
        # A local and an unknown recipient: the local one gets it.
        refused = smtp.sendmail(
            "zoe@remote.example",
            ["alice-in@example.com", "ghost@example.com"],
            f"From: zoe@remote.example\r\nSubject: {subject}\r\n\r\nwords\r\n".encode(),
        )
        assert refused == {"ghost@example.com": (550, b"5.1.1 no such user")}

    mixed = in_inbox(alice, SUBJECT)
    assert mixed["from"] == "zoe@remote.example" and mixed["from_name"] == "Zoë Remote"
    assert mixed["text"] == "Olá! O anexo segue.\nAté já.\n"
    assert mixed["source"] == "smtp" and mixed["message_id"] == "<mixed-1@remote.example>"
    [attached] = mixed["attachments"]
    assert (attached["filename"], attached["content_type"], attached["size"]) == (
        "cotação.pdf",
        "application/pdf",
        len(PDF),
    )
    download = alice.get(attached["url"])
    assert download.status_code == 200 and download.content == PDF

    alternative = in_inbox(alice, "Alternative")
    assert alternative["text"] == "Plain version of the news.\n"
    assert alternative["html"] is not None and "<b>version</b>" in alternative["html"]
    assert "script" not in alternative["html"]
    assert alternative["attachments"] == []

    decoded = in_inbox(alice, "Cotação ü✓")
    assert decoded["text"].strip() == "words"

    # Larger than GB_MAX_MAIL_MB (1): refused with 552, declared (SIZE) or not.
    big = mixed_message("alice-in@example.com", "too big")
    big.add_attachment(b"x" * (1024 * 1024), maintype="application", subtype="octet-stream")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            smtp.send_message(big)
        assert declared.value.smtp_code == 552
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.mail("zoe@remote.example")[0] == 250  # no SIZE given
        assert smtp.rcpt("alice-in@example.com")[0] == 250
        code, _ = smtp.data(big.as_bytes(policy=policy.SMTP))
        assert code == 552

    # A restart loses nothing, and the listener takes mail again.
    before = sorted((m["id"], m["subject"]) for m in inbox(alice))
    assert len(before) == 3
    srv.stop()
    srv.start()
    assert sorted((m["id"], m["subject"]) for m in inbox(alice)) == before
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(mixed_message("alice-in@example.com", "after restart"))
    assert in_inbox(alice, "after restart")["attachments"][0]["size"] == len(PDF)
    assert len(inbox(alice)) == 4

    # One message is at most 100 recipients (a copy each): the 101st waits for another.
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.mail("zoe@remote.example")[0] == 250
        for _ in range(100):
            assert smtp.rcpt("alice-in@example.com")[0] == 250
        assert smtp.rcpt("alice-in@example.com")[0] == 452


def test_the_same_message_delivered_again_is_kept_once(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    """A sender that tries again (its connection dropped after the mail was saved) leaves
    one copy."""
    port, env = listener_env()
    srv = fresh_server(**env)
    alice = user(srv, "alice-once@example.com")
    raw = mixed_message("alice-once@example.com", "once").as_bytes(policy=policy.SMTP)
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            assert smtp.sendmail("zoe@remote.example", ["alice-once@example.com"], raw) == {}
    in_inbox(alice, "once")
    time.sleep(0.5)
    assert len([m for m in inbox(alice) if m["subject"] == "once"]) == 1


def test_a_busy_listener_port_is_one_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "infra.cli", "serve", "--port", str(free_port())],
            env={
                "PATH": "/usr/bin:/bin",
                "GB_DATA_DIR": str(tmp_path / "data"),
                "GB_ADMIN_TOKEN": ADMIN_TOKEN,
                "GB_SMTP_LISTEN": f"127.0.0.1:{port}",
                "GB_LOG_LEVEL": "critical",
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert out.returncode == 1, out.stderr
    assert out.stderr == (
        f"gbserver: cannot listen for mail on 127.0.0.1:{port}: address already in use"
        " (set GB_SMTP_LISTEN)\n"
    )
