"""IMAP accounts (issue 10): a user connects a mailbox on a real IMAP server and its messages
arrive in their inbox exactly once, across restarts and crashes; the password is never
shown nor stored in clear; a failing account shows its error and holds up no other.

The server tests need an IMAP server where any user name logs in with one password and
APPEND works: Dovecot as `scripts/services up dovecot` runs it, then
`GB_TEST_IMAP=127.0.0.1:1143` (its password, `gbserver`, is GB_TEST_IMAP_PASSWORD's
default). Without GB_TEST_IMAP they are skipped. The tests of the parts (the FETCH parser,
folder names, batching, the secrets) need nothing.
"""

from __future__ import annotations

import functools
import imaplib
import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands.mail_accounts import SecretUnreadable
from infra.config import Settings
from infra.imap import Group, groups, mailbox_name, parse_bodies, parse_sizes, quoted, uid_set
from infra.secrets import FernetSecrets, key_from_text
from tests.server import ServerProcess, UserClient, gbserver

IMAP = os.environ.get("GB_TEST_IMAP", "").strip()
IMAP_PASSWORD = os.environ.get("GB_TEST_IMAP_PASSWORD", "gbserver")
needs_imap = pytest.mark.skipif(
    not IMAP,
    reason="GB_TEST_IMAP=host:port names no IMAP server: run `scripts/services up dovecot`"
    " and set GB_TEST_IMAP=127.0.0.1:1143",
)
# The test server is on loopback, which accounts may reach only when allowed.
POLL = {"GB_IMAP_POLL_SECONDS": "0.5", "GB_IMAP_ALLOW_PRIVATE": "1"}
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"


# --- helpers ----------------------------------------------------------------------------


def _host_port() -> tuple[str, int]:
    host, _, port = IMAP.rpartition(":")
    return host, int(port)


class Mailbox:
    """A fresh user's mailbox on the test IMAP server, filled over IMAP (APPEND)."""

    def __init__(self) -> None:
        self.user = f"gbtest-{uuid.uuid4().hex[:12]}"

    def _session(self) -> imaplib.IMAP4:
        host, port = _host_port()
        imap = imaplib.IMAP4(host, port, timeout=10)
        imap.login(self.user, IMAP_PASSWORD)
        return imap

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        imap = self._session()
        try:
            name = quoted(mailbox_name(folder))
            if folder != "INBOX":
                imap.create(name)  # NO when it exists: fine
            for raw in messages:
                typ, data = imap.append(name, None, None, raw)
                assert typ == "OK", data
        finally:
            imap.logout()

    def recreate(self, folder: str) -> None:
        """Deletes the folder and makes it again: a new UIDVALIDITY, UIDs from 1."""
        imap = self._session()
        try:
            name = quoted(mailbox_name(folder))
            assert imap.delete(name)[0] == "OK"
            assert imap.create(name)[0] == "OK"
        finally:
            imap.logout()

    def account(self, password: str = IMAP_PASSWORD, **extra: Any) -> dict[str, Any]:
        host, port = _host_port()
        body = {
            "host": host,
            "port": port,
            "security": "none",
            "username": self.user,
            "password": password,
        }
        return {**body, **extra}


def plain(subject: str, body: str = "hello") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Bea <bea@example.org>"
    msg["To"] = "ana@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def with_attachment(subject: str) -> bytes:
    """multipart/mixed: a text/html alternative and a PDF attachment; a UTF-8 subject."""
    msg = EmailMessage()
    msg["From"] = "Zoë Ünal <zoe@example.org>"
    msg["To"] = "ana@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Olá, segue o relatório em anexo.")
    msg.add_alternative("<p>Olá, segue o <b>relatório</b> em anexo.</p>", subtype="html")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    return msg.as_bytes()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def inbox(client: httpx.Client) -> list[dict[str, Any]]:
    r = client.get("/api/email/inbox", params={"limit": 200})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["pagination"]["total"] == len(page["data"])
    return list(page["data"])


def subjects(client: httpx.Client) -> list[str]:
    return sorted(m["subject"] for m in inbox(client))


def user_of(server: ServerProcess) -> UserClient:
    email = f"imap-{uuid.uuid4().hex[:10]}@example.com"
    with server.client() as admin:
        r = admin.post("/api/admin/tokens", json={"user": email, "role": "user"})
        assert r.status_code == 201, r.text
    return server.client(r.json()["token"], email)


def account(client: httpx.Client, account_id: str) -> dict[str, Any]:
    r = client.get(f"/api/email/accounts/{account_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def events_text(server: ServerProcess) -> str:
    return gbserver("events", env=server.env).stdout


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


# --- against a real IMAP server ---------------------------------------------------------


@needs_imap
def test_messages_arrive_exactly_once_across_restarts_and_crashes(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    box = Mailbox()
    attached = "Relatório de março ✓ (ação)"
    first = [with_attachment(attached)] + [plain(f"first {i:02}") for i in range(59)]
    box.append(*first)
    server = fresh_server(**POLL)
    c = user_of(server)
    answers: list[str] = []

    r = c.post("/api/email/accounts", json=box.account())
    answers.append(r.text)
    assert r.status_code == 201, r.text
    created = r.json()
    assert "password" not in created and "password_encrypted" not in created
    assert (created["username"], created["folder"], created["security"]) == (
        box.user,
        "INBOX",
        "none",
    )
    assert r.headers["location"] == f"/api/email/accounts/{created['id']}"

    # Killed mid-sync (or just after): the restarted server goes on, nothing twice.
    wait_for("the first messages", lambda: len(inbox(c)) >= 1)
    server.kill()
    server.start()
    wait_for("all 60 messages", lambda: len(inbox(c)) >= 60)
    time.sleep(2)  # several more polls
    expected = sorted([attached] + [f"first {i:02}" for i in range(59)])
    assert subjects(c) == expected

    synced = wait_for("the account synced", lambda: account(c, created["id"])["imported"] == 60)
    got = account(c, created["id"])
    answers.append(json.dumps(got))
    assert synced and got["status"] == "ok" and got["last_error"] is None
    assert got["last_uid"] == 60 and got["uidvalidity"] is not None

    # The multipart message: its text, its HTML and its attachment, as sent.
    mail_id = next(m["id"] for m in inbox(c) if m["subject"] == attached)
    mail = c.get(f"/api/email/{mail_id}").json()
    assert mail["folder"] == "inbox" and mail["from"] == "zoe@example.org"
    assert "relatório em anexo" in mail["text"]
    assert [(a["filename"], a["content_type"], a["size"]) for a in mail["attachments"]] == [
        ("report.pdf", "application/pdf", len(PDF))
    ]
    assert c.get(mail["attachments"][0]["url"]).content == PDF

    # A clean restart: nothing fetched again; then only what is new arrives.
    server.stop()
    server.start()
    time.sleep(2)
    assert len(inbox(c)) == 60
    box.append(plain("later 1"), plain("later 2"))
    wait_for("the new messages", lambda: len(inbox(c)) == 62)
    time.sleep(1.5)
    assert subjects(c) == sorted([*expected, "later 1", "later 2"])
    got = account(c, created["id"])
    assert (got["imported"], got["last_uid"]) == (62, 62)

    listed = c.get("/api/email/accounts")
    answers.append(listed.text)
    assert [a["id"] for a in listed.json()["data"]] == [created["id"]]

    # The password in clear: in no answer, and no value of the event log holds it (the
    # log's topics say "gbserver", which is also this server's password: values only).
    for text in answers:
        for value in strings_in(json.loads(text)):
            assert IMAP_PASSWORD not in value, text
    records = [json.loads(line) for line in events_text(server).splitlines()]
    connected = [r for r in records if r["topic"].endswith("ImapAccountConnected")]
    assert len(connected) == 1
    assert connected[0]["data"]["password_encrypted"].startswith("gAAAA")  # a Fernet token
    for record in records:
        for value in strings_in(record["data"]):
            assert IMAP_PASSWORD not in value, record
    # The log grows with the messages, not with the polls.
    synced_events = [r for r in records if r["topic"].endswith("ImapSynced")]
    assert 1 <= len(synced_events) <= 10, len(synced_events)
    c.close()


@needs_imap
def test_accounts_on_private_addresses_are_refused_unless_allowed(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    """A user names the host: without GB_IMAP_ALLOW_PRIVATE the server connects to public
    addresses only, so no one can make it probe its own network."""
    box = Mailbox()
    box.append(plain("private"))
    server = fresh_server(GB_IMAP_POLL_SECONDS="0.5")
    c = user_of(server)
    for host in (_host_port()[0], "localhost", "169.254.169.254", "10.0.0.1"):
        r = c.post("/api/email/accounts", json=box.account(host=host))
        assert r.status_code == 201, r.text
        account_id: str = r.json()["id"]
        refused = functools.partial(lambda a: account(c, a)["status"] == "error", account_id)
        assert wait_for(f"{host} refused", refused)
        error = account(c, account_id)["last_error"]
        assert "not a public address" in error and "GB_IMAP_ALLOW_PRIVATE" in error, error
    assert inbox(c) == []


@needs_imap
def test_a_failing_account_shows_its_error_and_holds_up_no_other(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    box = Mailbox()
    box.append(plain("in work 1"), plain("in work 2"), folder="Work & Play")
    box.append(plain("in inbox"))
    server = fresh_server(**POLL)
    c = user_of(server)
    wrong = f"wrong-{uuid.uuid4().hex}"

    bad = c.post("/api/email/accounts", json=box.account(password=wrong))
    assert bad.status_code == 201, bad.text
    good = c.post("/api/email/accounts", json=box.account(folder="Work & Play"))
    assert good.status_code == 201, good.text
    missing = c.post("/api/email/accounts", json=box.account(folder="No such folder"))
    assert missing.status_code == 201, missing.text
    bad_id, good_id, missing_id = (r.json()["id"] for r in (bad, good, missing))

    wait_for("the good account's messages", lambda: len(inbox(c)) == 2)
    assert subjects(c) == ["in work 1", "in work 2"]  # the bad account's INBOX: nothing
    failed = wait_for(
        "the bad account's error", lambda: account(c, bad_id)["status"] == "error"
    ) and account(c, bad_id)
    assert "login" in failed["last_error"] and failed["last_error_at"]
    assert wrong not in failed["last_error"]
    gone = wait_for("the missing folder", lambda: account(c, missing_id)["status"] == "error")
    assert gone and "No such folder" in account(c, missing_id)["last_error"]

    # The same error again and again is recorded once.
    time.sleep(3)
    records = [json.loads(line) for line in events_text(server).splitlines()]
    failures = [r for r in records if r["topic"].endswith("ImapSyncFailed")]
    assert sorted(r["aggregate_id"] for r in failures) == sorted([bad_id, missing_id])
    for record in records:
        assert wrong not in json.dumps(record)
    assert wrong not in server.log_path.read_text()
    assert wrong not in c.get("/api/email/accounts").text

    # A new UIDVALIDITY (the folder made again): its messages are new, none is lost.
    box.recreate("Work & Play")
    box.append(plain("in work again"), folder="Work & Play")
    wait_for("the recreated folder's message", lambda: len(inbox(c)) == 3)
    assert subjects(c) == ["in work 1", "in work 2", "in work again"]
    moved = account(c, good_id)
    assert (moved["last_uid"], moved["imported"]) == (1, 3)

    # Removed, then connected again: where it left off, nothing imported twice.
    assert c.delete(f"/api/email/accounts/{good_id}").status_code == 204
    assert c.get(f"/api/email/accounts/{good_id}").status_code == 404
    assert c.delete(f"/api/email/accounts/{good_id}").status_code == 404
    box.append(plain("while removed"), folder="Work & Play")
    again = c.post("/api/email/accounts", json=box.account(folder="Work & Play"))
    assert again.status_code == 201 and again.json()["id"] == good_id, again.text
    wait_for("the message sent while removed", lambda: len(inbox(c)) == 4)
    time.sleep(1.5)
    assert len(inbox(c)) == 4

    # The bad account, fixed by connecting it again with the right password.
    assert c.delete(f"/api/email/accounts/{bad_id}").status_code == 204
    fixed = c.post("/api/email/accounts", json=box.account())
    assert fixed.status_code == 201 and fixed.json()["id"] == bad_id, fixed.text
    wait_for("the INBOX message", lambda: len(inbox(c)) == 5)
    ok = wait_for("the fixed account", lambda: account(c, bad_id)["status"] == "ok")
    assert ok and account(c, bad_id)["last_error"] is None

    # Rebuilt from the log, the accounts read the same (removals, errors, positions).
    before = c.get("/api/email/accounts").json()
    assert len(before["data"]) == 3
    gbserver("rebuild", "mail_accounts", env=server.env)
    assert c.get("/api/email/accounts").json() == before
    c.close()


# --- the API alone --------------------------------------------------------------------


def test_accounts_are_their_owners_alone(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    body = {
        "host": "imap.invalid",
        "username": "ana",
        "password": "secret-of-ana",
    }
    r = ana.post("/api/email/accounts", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["port"], created["security"], created["folder"]) == (993, "tls", "INBOX")
    path = f"/api/email/accounts/{created['id']}"

    # The accounts' route is not taken for a folder or a mail id.
    listed = ana.get("/api/email/accounts")
    assert listed.status_code == 200 and [a["id"] for a in listed.json()["data"]] == [created["id"]]
    assert bea.get("/api/email/accounts").json()["data"] == []
    assert bea.get(path).status_code == 404
    assert bea.delete(path).status_code == 404
    assert ana.get(path).status_code == 200
    assert "secret-of-ana" not in ana.get(path).text + listed.text + r.text

    # The same mailbox twice is a conflict; the host's case does not make it another.
    again = ana.post("/api/email/accounts", json={**body, "host": "IMAP.invalid"})
    assert again.status_code == 409, again.text
    # Bea's own account of the same mailbox is hers, and another account.
    hers = bea.post("/api/email/accounts", json=body)
    assert hers.status_code == 201 and hers.json()["id"] != created["id"]
    assert ana.delete(path).status_code == 204
    assert ana.get("/api/email/accounts").json()["data"] == []
    assert [a["id"] for a in bea.get("/api/email/accounts").json()["data"]] == [hers.json()["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host": "imaps://imap.example.com"}, "host"),
        ({"host": "imap.example.com:993"}, "host"),
        ({"host": "imap example.com"}, "host"),
        ({"host": ""}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"security": "ssl"}, "security"),
        ({"username": ""}, "username"),
        ({"password": "line\nbreak"}, "password"),
        ({"password": "ends with a newline\n"}, "password"),
        ({"folder": "a\tb"}, "folder"),
        ({"smtp": True}, "smtp"),
    ],
)
def test_refused_accounts(
    make_user: Callable[..., UserClient], change: dict[str, Any], field: str
) -> None:
    c = make_user()
    body = {"host": "imap.example.com", "username": "ana", "password": "pw", **change}
    r = c.post("/api/email/accounts", json=body)
    assert r.status_code == 400, r.text
    assert field in json.dumps(r.json()["error"]["details"]), r.text
    assert c.get("/api/email/accounts").json()["data"] == []


# --- the parts --------------------------------------------------------------------------


def test_fetch_answers_are_parsed_wherever_the_uid_is() -> None:
    data: list[Any] = [
        (b"1 (UID 7 BODY[] {5}", b"hello"),
        b")",
        b"2 (FLAGS (\\Seen))",  # unsolicited: no body
        (b"3 (BODY[] {3}", b"abc"),
        b" UID 9)",  # the UID after the literal
        (b"4 (RFC822.SIZE 3 UID 12 BODY[] {3}", b"xyz"),
        b")",
    ]
    assert parse_bodies(data) == {7: b"hello", 9: b"abc", 12: b"xyz"}
    assert parse_sizes([b"1 (UID 7 RFC822.SIZE 5)", b"2 (RFC822.SIZE 30 UID 8)", b"junk"]) == {
        7: 5,
        8: 30,
    }


def test_uid_sets_and_batches() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"
    sizes = {1: 10, 2: 10_000_000, 3: 10, 5: 9_000_000, 6: 9_000_000, 7: 10}
    # 2 is too large (skipped), 4 is gone (no size), 5 and 6 do not fit in one fetch.
    assert list(groups([1, 2, 3, 4, 5, 6, 7], sizes, max_bytes=9_500_000)) == [
        Group([1, 3, 5], 5, 1),
        Group([6, 7], 7, 0),
    ]
    many = list(range(1, 46))
    assert [len(g.fetch) for g in groups(many, dict.fromkeys(many, 1), 10)] == [20, 20, 5]
    assert list(groups([4], {}, 10)) == [Group([], 4, 0)]  # gone: the position moves on


def test_folder_names_in_modified_utf7() -> None:
    assert mailbox_name("INBOX") == "INBOX"
    assert mailbox_name("Work & Play") == "Work &- Play"
    assert mailbox_name("Entwürfe") == "Entw&APw-rfe"  # RFC 3501's own kind of example
    assert mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert quoted('a "b" \\c') == '"a \\"b\\" \\\\c"'


def test_secrets_from_the_setting_or_a_key_file(tmp_path: Path) -> None:
    made = FernetSecrets(Settings(data_dir=tmp_path))
    token = made.encrypt("pässword")
    assert "pässword" not in token and made.decrypt(token) == "pässword"
    key = tmp_path / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert FernetSecrets(Settings(data_dir=tmp_path)).decrypt(token) == "pässword"  # the file's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.key"]  # no temporary left

    other = FernetSecrets(Settings(data_dir=tmp_path, secret_key="a passphrase"))
    with pytest.raises(SecretUnreadable):
        other.decrypt(token)
    same = FernetSecrets(Settings(data_dir=tmp_path / "elsewhere", secret_key="a passphrase"))
    assert same.decrypt(other.encrypt("x")) == "x"
    assert not (tmp_path / "elsewhere").exists()  # the setting's key: no file
    assert len(key_from_text("a passphrase")) == 44
