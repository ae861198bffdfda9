"""Email over HTTP: send, folders, one mail, drafts, trash, threads, search, attachments,
ownership, SEND MAIL from a dialog, and a rebuild that restores every mailbox exactly.

No relay is configured here (GB_SMTP_HOST): mail to outside addresses is `not_delivered`,
mail to users of the server lands in their inbox all the same. Delivery through a relay
is tested with the relay worker (infra.mailer)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest
from eventsourcing.persistence import Tracking

from commands.mail import MailCommands, SendEmail
from commands.mime import parse_message
from commands.ports import BlobTooLarge, NotFound
from domain.common import Actor, rfc3339
from domain.mail import received_id
from infra.blobs import FileBlobStore
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from infra.readstore import open_read_store
from projections.mail import MailProjection, due_deliveries, get_mail, list_folder, thread_of
from tests.server import ServerProcess, UserClient, gbserver
from tests.test_sessions_api import bot, deploy, open_session, say

OUTSIDE = "recipient@example.com"  # no user of the server


def send(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/api/email/send", json={"subject": "s", "body": "b", **body})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/api/email/{r.json()['id']}"
    found: dict[str, Any] = r.json()
    return found


def folder(client: httpx.Client, name: str = "inbox", **params: Any) -> list[dict[str, Any]]:
    r = client.get(f"/api/email/{name}", params=params)
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def mail(client: httpx.Client, mail_id: str) -> dict[str, Any]:
    r = client.get(f"/api/email/{mail_id}")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{r.json()["version"]}"'
    found: dict[str, Any] = r.json()
    return found


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()["error"]
    return body


def test_the_reference_body_sends_and_is_listed_in_sent(
    make_user: Callable[..., UserClient],
) -> None:
    ana = make_user()
    body = {
        "to": [OUTSIDE],
        "cc": [],
        "bcc": [],
        "subject": "Meeting Tomorrow",
        "body": "Hi, let's meet at 3pm.",
        "html": False,
        "attachments": [],
    }
    r = ana.post("/api/email/send", json=body)
    assert r.status_code == 201, r.text
    sent = r.json()
    assert sent["folder"] == "sent" and sent["status"] == "not_delivered"
    assert (sent["from"], sent["to"], sent["subject"]) == (
        ana.email,
        [OUTSIDE],
        "Meeting Tomorrow",
    )
    assert sent["text"] == "Hi, let's meet at 3pm." and sent["html"] is None
    assert sent["message_id"].startswith("<") and sent["message_id"].endswith("@example.com>")
    assert r.headers["etag"] == f'"{sent["version"]}"'
    listed = folder(ana, "sent")
    assert [(m["id"], m["status"], m["snippet"]) for m in listed] == [
        (sent["id"], "not_delivered", "Hi, let's meet at 3pm.")
    ]
    assert folder(ana, "inbox") == [] and folder(ana, "drafts") == []
    assert mail(ana, sent["id"]) == sent


def test_local_recipients_get_it_in_their_inbox_and_bcc_stays_private(
    make_user: Callable[..., UserClient],
) -> None:
    ana, bea, carl = make_user(), make_user(), make_user()
    sent = send(ana, to=[bea.email.upper()], bcc=[carl.email], subject="Hello")
    assert sent["status"] == "sent"  # every recipient is local: nothing for a relay
    assert sent["to"] == [bea.email] and sent["bcc"] == [carl.email]
    for who in (bea, carl):
        (got,) = folder(who)
        assert (got["from"], got["subject"], got["status"]) == (ana.email, "Hello", "received")
        full = mail(who, got["id"])
        assert full["bcc"] == [] and full["source"] == "local"
        assert full["message_id"] == sent["message_id"] and full["text"] == "b"
    mixed = send(ana, to=[bea.email, OUTSIDE])
    assert mixed["status"] == "not_delivered"  # the outside one needs a relay
    assert [m["id"] for m in folder(bea)][0] != mixed["id"]
    assert len(folder(bea)) == 2


def test_replies_share_a_thread_in_each_mailbox(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    first = send(ana, to=[bea.email], subject="Plan")
    (received,) = folder(bea)
    reply = send(bea, to=[ana.email], subject="Re: Plan", in_reply_to=received["id"])
    assert reply["in_reply_to"] == first["message_id"]
    assert reply["references"] == [first["message_id"]]
    assert reply["thread_id"] == received["thread_id"]  # bea's thread
    (answer,) = folder(ana)
    assert answer["thread_id"] == first["thread_id"]  # ana's thread: her sent mail's
    again = send(ana, to=[bea.email], subject="Re: Re: Plan", in_reply_to=answer["id"])
    assert again["thread_id"] == first["thread_id"]
    assert again["references"] == [first["message_id"], reply["message_id"]]
    assert {m["thread_id"] for m in folder(bea)} == {received["thread_id"]}
    other = send(ana, to=[bea.email], subject="Unrelated")
    assert other["thread_id"] != first["thread_id"]
    # Not a mail of yours to answer.
    r = ana.post(
        "/api/email/send",
        json={"to": [bea.email], "subject": "x", "in_reply_to": str(uuid.uuid4())},
    )
    assert error(r, 400)["details"][0]["field"] == "in_reply_to"


def test_drafts_save_change_and_send(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    r = ana.post("/api/email/drafts", json={"subject": "Numbers"})
    assert r.status_code == 201, r.text
    draft = r.json()
    assert (draft["folder"], draft["status"], draft["to"]) == ("drafts", "draft", [])
    assert r.headers["location"] == f"/api/email/{draft['id']}"
    url = f"/api/email/drafts/{draft['id']}"
    r = ana.post(f"{url}/send")
    assert error(r, 400)["details"][0]["field"] == "to"  # no recipient yet: stays a draft
    assert [m["id"] for m in folder(ana, "drafts")] == [draft["id"]]
    r = ana.put(url, json={"body": "<p>Q1 is <b>up</b></p>", "html": True})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["subject"] == "Numbers"  # kept
    assert changed["html"] == "<p>Q1 is <b>up</b></p>" and changed["text"] == "Q1 is up"
    stale = ana.put(url, json={"to": [bea.email]}, headers={"If-Match": f'"{draft["version"]}"'})
    assert stale.status_code == 409, stale.text
    r = ana.put(url, json={"to": [bea.email]}, headers={"If-Match": f'"{changed["version"]}"'})
    assert r.status_code == 200 and r.json()["to"] == [bea.email]
    r = ana.post(f"{url}/send")
    assert r.status_code == 200, r.text
    sent = r.json()
    assert (sent["id"], sent["folder"], sent["status"]) == (draft["id"], "sent", "sent")
    assert folder(ana, "drafts") == []
    assert [m["id"] for m in folder(ana, "sent")] == [draft["id"]]
    (got,) = folder(bea)
    assert mail(bea, got["id"])["html"] == "<p>Q1 is <b>up</b></p>"
    # A sent mail is no draft any more.
    assert error(ana.put(url, json={"subject": "x"}), 404)
    assert error(ana.post(f"{url}/send"), 404)


def test_delete_moves_to_trash_then_deletes_for_good(
    make_user: Callable[..., UserClient],
) -> None:
    ana = make_user()
    sent = send(ana, to=[OUTSIDE], subject="Oops")
    r = ana.delete(f"/api/email/{sent['id']}")
    assert r.status_code == 204, r.text
    assert folder(ana, "sent") == []
    (trashed,) = folder(ana, "trash")
    assert (trashed["id"], trashed["status"]) == (sent["id"], "not_delivered")
    assert mail(ana, sent["id"])["folder"] == "trash"
    assert ana.delete(f"/api/email/{sent['id']}").status_code == 204
    assert folder(ana, "trash") == []
    error(ana.get(f"/api/email/{sent['id']}"), 404)
    error(ana.delete(f"/api/email/{sent['id']}"), 404)


def test_search_and_pagination(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    subjects = ["Alpha report", "beta 100% done", "Gamma_x", "Ünïcode Straße", "delta"]
    ids = [send(ana, to=[OUTSIDE], subject=s)["id"] for s in subjects]
    newest_first = list(reversed(ids))
    r = ana.get("/api/email/sent", params={"limit": 2})
    page = r.json()
    assert [m["id"] for m in page["data"]] == newest_first[:2]
    assert page["pagination"] == {"total": 5, "limit": 2, "offset": 0, "has_more": True}
    r = ana.get("/api/email/sent", params={"limit": 2, "offset": 4})
    assert [m["id"] for m in r.json()["data"]] == newest_first[4:]
    assert r.json()["pagination"]["has_more"] is False

    def found(q: str) -> list[str]:
        return [m["subject"] for m in folder(ana, "sent", q=q)]

    assert found("REPORT") == ["Alpha report"]
    assert found("%") == ["beta 100% done"]  # a wildcard is a character
    assert found("_") == ["Gamma_x"]
    assert found("straße") == ["Ünïcode Straße"] and found("üNÏ") == ["Ünïcode Straße"]
    assert found(ana.email.upper()) == list(reversed(subjects))  # the sender matches
    assert found("nothing like it") == []


def test_validation_names_the_field(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()

    def refused(body: dict[str, Any], field: str) -> str:
        r = ana.post("/api/email/send", json={"to": [OUTSIDE], **body})
        found = error(r, 400)
        assert [d["field"] for d in found["details"]] == [field], found
        message: str = found["message"]
        return message

    assert "not a valid email address" in refused({"to": ["ana@-example.com"]}, "to[0]")
    assert "email address" in refused({"cc": ["not an address"]}, "cc[0]")
    assert "one line" in refused({"subject": "Hi\r\nBcc: victim@example.com"}, "subject")
    assert "one line" in refused({"subject": "tab\there"}, "subject")
    refused({"surprise": True}, "surprise")
    refused({"to": []}, "to")  # no recipient at all
    many = [f"u{i}@example.com" for i in range(60)]
    others = [f"v{i}@example.com" for i in range(41)]
    assert "at most 100" in refused({"to": many, "cc": others}, "to")
    bad_name = {"filename": "a\nb.txt", "content_base64": "eA=="}
    refused({"attachments": [bad_name]}, "attachments[0].filename")
    bad_type = {"filename": "a.txt", "content_type": "text\r\nX: y", "content_base64": "eA=="}
    refused({"attachments": [bad_type]}, "attachments[0].content_type")
    refused(
        {"attachments": [{"filename": "a", "content_base64": "***"}]},
        "attachments[0].content_base64",
    )
    r = ana.post("/api/email/send", json={"to": [OUTSIDE], "body": "nul \u0000 here"})
    assert "NUL" in error(r, 400)["message"]  # refused at the door, as in every request
    assert folder(ana, "sent") == []  # nothing was recorded


def test_html_is_sanitised_and_attachments_download(
    make_user: Callable[..., UserClient],
) -> None:
    ana, bea = make_user(), make_user()
    data = bytes(range(256)) * 4
    html = (
        '<p onclick="steal()">Hi <a href="javascript:alert(1)">x</a>'
        "<script>alert(2)</script><b>bold</b></p>"
    )
    sent = send(
        ana,
        to=[bea.email],
        body=html,
        html=True,
        attachments=[
            {
                "filename": "relatório final.bin",
                "content_type": "not a media type",  # sent as application/octet-stream
                "content_base64": base64.b64encode(data).decode(),
            }
        ],
    )
    (got,) = folder(bea)
    assert got["has_attachments"] is True
    full = mail(bea, got["id"])
    assert "script" not in full["html"] and "onclick" not in full["html"]
    assert "javascript" not in full["html"] and "<b>bold</b>" in full["html"]
    assert full["text"] == "Hi xbold"
    (item,) = full["attachments"]
    assert (item["filename"], item["size"]) == ("relatório final.bin", len(data))
    assert item["content_type"] == "application/octet-stream"
    r = bea.get(item["url"])
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-disposition"].endswith("filename*=UTF-8''relat%C3%B3rio%20final.bin")
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert ana.get(sent["attachments"][0]["url"]).content == data  # the sender's copy too
    error(bea.get(f"/api/email/{got['id']}/attachments/1"), 404)


def test_drive_files_attach_by_path(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    data = b"quarterly numbers\n" * 100
    r = ana.post(
        f"/api/drive/{quote('reports/q1.txt')}",
        files=[("file", ("q1.txt", data, "text/plain"))],
    )
    assert r.status_code == 201, r.text
    sent = send(ana, to=[bea.email], attachments=["reports/q1.txt"])
    (item,) = sent["attachments"]
    assert (item["filename"], item["size"], item["content_type"]) == (
        "q1.txt",
        len(data),
        "text/plain",
    )
    (got,) = folder(bea)
    (attached,) = mail(bea, got["id"])["attachments"]
    assert bea.get(attached["url"]).content == data
    # A path that is not a file of the sender's: bea's drive has no reports/q1.txt.
    r = bea.post("/api/email/send", json={"to": [ana.email], "attachments": ["reports/q1.txt"]})
    assert error(r, 400)["details"][0]["field"] == "attachments[0]"
    r = ana.post("/api/email/send", json={"to": [bea.email], "attachments": ["../etc/passwd"]})
    assert error(r, 400)["details"][0]["field"] == "attachments[0]"


def test_no_one_reads_or_touches_another_users_mail(
    make_user: Callable[..., UserClient],
) -> None:
    ana, bea = make_user(), make_user()
    admin = make_user(role="admin")
    sent = send(
        ana,
        to=[OUTSIDE],
        attachments=[{"filename": "a.txt", "content_base64": "eA=="}],
    )
    draft = ana.post("/api/email/drafts", json={"subject": "secret"}).json()
    for who in (bea, admin):
        for mail_id in (sent["id"], draft["id"]):
            missing = error(who.get(f"/api/email/{mail_id}"), 404)
            assert missing["message"] == f"mail {mail_id} not found"
            error(who.delete(f"/api/email/{mail_id}"), 404)
        error(who.get(f"/api/email/{sent['id']}/attachments/0"), 404)
        error(who.put(f"/api/email/drafts/{draft['id']}", json={"subject": "mine"}), 404)
        error(who.post(f"/api/email/drafts/{draft['id']}/send"), 404)
        assert folder(who, "sent") == [] and folder(who, "drafts") == []
        r = who.post("/api/email/send", json={"to": [OUTSIDE], "in_reply_to": sent["id"]})
        # the answer for a mail that does not exist: nothing says this one does
        assert error(r, 400)["message"] == f"`in_reply_to`: you have no mail {sent['id']}"
    assert mail(ana, draft["id"])["subject"] == "secret"
    assert mail(ana, sent["id"])["folder"] == "sent"


def test_folder_names_and_ids(make_user: Callable[..., UserClient]) -> None:
    ana = make_user()
    assert ana.get("/api/email").json() == ana.get("/api/email/inbox").json()
    found = error(ana.get("/api/email/spam"), 404)
    assert "inbox, sent, drafts, trash" in found["message"]
    error(ana.get(f"/api/email/{uuid.uuid4()}"), 404)
    assert "not a valid id" in error(ana.delete("/api/email/nope"), 404)["message"]


def test_idempotent_send(make_user: Callable[..., UserClient]) -> None:
    ana, bea = make_user(), make_user()
    body = {"to": [bea.email], "subject": "once"}
    key = {"Idempotency-Key": f"mail-{uuid.uuid4()}"}
    first = ana.post("/api/email/send", json=body, headers=key)
    again = ana.post("/api/email/send", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(folder(ana, "sent")) == 1 and len(folder(bea)) == 1
    other = ana.post("/api/email/send", json={**body, "subject": "twice"}, headers=key)
    assert other.status_code == 409


SEND_MAIL = """SEND MAIL "{to}", "Welcome " + "aboard", "Your account is ready."
TALK "mailed"
"""


def test_send_mail_from_a_dialog_is_sent_by_the_sessions_user(
    make_user: Callable[..., UserClient],
) -> None:
    ana, bea = make_user(), make_user()
    name = bot()
    deploy(ana, name, "start", SEND_MAIL.format(to=f"{bea.email}, {OUTSIDE}"))
    session = open_session(ana, name)
    reply = say(ana, session, "hi")
    assert "mailed" in str(reply), reply
    (sent,) = folder(ana, "sent")
    assert (sent["subject"], sent["to"], sent["status"]) == (
        "Welcome aboard",
        [bea.email, OUTSIDE],
        "not_delivered",
    )
    assert mail(ana, sent["id"])["via"] == f"bot:{name}"
    (got,) = folder(bea)
    assert mail(bea, got["id"])["text"] == "Your account is ready."
    # A bad address fails the dialog's line, and sends nothing.
    other = bot()
    deploy(ana, other, "start", SEND_MAIL.format(to="nobody"))
    reply = say(ana, open_session(ana, other), "hi")
    assert "mailed" not in str(reply), reply
    assert len(folder(ana, "sent")) == 1


def _mailboxes(clients: list[UserClient]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for client in clients:
        for name in ("inbox", "sent", "drafts", "trash"):
            listed = folder(client, name, limit=200)
            seen[f"{client.email}/{name}"] = listed
            for item in listed:
                full = mail(client, item["id"])
                seen[f"{client.email}/{item['id']}"] = full
                for attached in full["attachments"]:
                    r = client.get(attached["url"])
                    seen[attached["url"]] = (r.status_code, hashlib.sha256(r.content).hexdigest())
    return seen


@pytest.mark.parametrize("online", [False, True], ids=["stopped", "online"])
def test_rebuild_restores_every_mailbox_exactly(
    fresh_server: Callable[..., ServerProcess], online: bool
) -> None:
    srv = fresh_server()
    clients: list[UserClient] = []
    with srv.client() as admin:
        for who in ("ana", "bea"):
            r = admin.post("/api/admin/tokens", json={"user": f"{who}@example.com"})
            clients.append(srv.client(r.json()["token"], f"{who}@example.com"))
    ana, bea = clients
    try:
        first = send(ana, to=[bea.email], cc=[OUTSIDE], subject="Plan", html=True, body="<b>x</b>")
        (received,) = folder(bea)
        send(bea, to=[ana.email], subject="Re: Plan", in_reply_to=received["id"])
        send(
            ana,
            to=[OUTSIDE],
            attachments=[{"filename": "a.txt", "content_base64": "eA=="}],
        )
        draft = ana.post("/api/email/drafts", json={"subject": "later"}).json()
        ana.put(f"/api/email/drafts/{draft['id']}", json={"to": [bea.email]})
        gone = send(ana, to=[OUTSIDE], subject="gone")
        ana.delete(f"/api/email/{gone['id']}")
        ana.delete(f"/api/email/{gone['id']}")
        ana.delete(f"/api/email/{first['id']}")
        before = _mailboxes(clients)
        assert len(before) > 10
        if not online:
            srv.stop()
        result = gbserver("rebuild", "mail", env=srv.env)
        assert "mail:" in result.stdout, result.stdout
        if not online:
            srv.start()
        assert _mailboxes(clients) == before
        # The blob collector keeps every blob a mailbox (or the outbox) names.
        collected = gbserver("drive", "gc", "--grace", "0", env=srv.env)
        assert "removed" in collected.stdout, collected.stdout
        assert _mailboxes(clients) == before
    finally:
        for client in clients:
            client.close()


def test_a_mail_over_the_size_limit_is_refused(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server(GB_MAX_MAIL_MB="1", GB_MAX_BODY_BYTES=str(4 * 1024 * 1024))
    with srv.client() as admin:
        r = admin.post("/api/admin/tokens", json={"user": "ana@example.com"})
        token = r.json()["token"]
    with srv.client(token, "ana@example.com") as ana:
        big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
        r = ana.post(
            "/api/email/send",
            json={"to": [OUTSIDE], "attachments": [{"filename": "big.bin", "content_base64": big}]},
        )
        assert error(r, 413)["message"] == "the mail is larger than 1 MiB (GB_MAX_MAIL_MB)"
        fits = base64.b64encode(b"x" * 500_000).decode()
        r = ana.post(
            "/api/email/send",
            json={"to": [OUTSIDE], "attachments": [{"filename": "ok.bin", "content_base64": fits}]},
        )
        assert r.status_code == 201, r.text
        assert len(folder(ana, "sent")) == 1


# --- the commands the transport workers use (commands.mail.MailCommands), in process ------


class Mailbox:
    """MailCommands over a real event store, blob store and read model, projected on demand;
    `local` are the users of this server."""

    def __init__(self, tmp_path: Path, local: set[str], *, relay: bool = True) -> None:
        settings = Settings(data_dir=tmp_path)
        self.app = GBApplication(settings)
        self.events = EventStoreAdapter(self.app)
        self.read = open_read_store(settings)
        self.projection = MailProjection(self.read)
        self.local = local
        self.now = datetime.now(UTC)  # the events are stamped with the real time
        self.commands = MailCommands(
            self.events,
            FileBlobStore(tmp_path / "blobs"),
            self,
            relay=relay,
            max_mail_bytes=64 * 1024,
            clock=lambda: self.now,
        )
        self.position = 0

    def exists(self, email: str) -> bool:
        return email.lower() in self.local

    def thread_of(self, owner: str, message_ids: Sequence[str]) -> str | None:
        return thread_of(self.read, owner, message_ids)

    def project(self) -> None:
        while batch := self.events.notifications(self.position, 500, MailProjection.topics):
            for n in batch:
                self.projection.process_batch([(self.events.decode(n), Tracking("mail", n.id))])
            self.position = batch[-1].id

    def due(self, seconds: float = 0) -> list[str]:
        self.project()
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        return due_deliveries(self.read, rfc3339(when), 10)

    def close(self) -> None:
        self.app.close()
        self.read.datastore.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Mailbox]:
    found = Mailbox(tmp_path, {"ana@example.com", "bea@example.com"})
    yield found
    found.close()


ANA = Actor("ana@example.com")


def test_receive_files_a_message_once_per_key_in_its_thread(box: Mailbox) -> None:
    sent_id, _ = box.commands.send(ANA, SendEmail(to=["zed@example.org"], subject="Plan"))
    box.project()
    sent = get_mail(box.read, ANA.email, sent_id)
    assert sent is not None and sent.status == "queued"
    raw = (
        "From: Zed <zed@example.org>\r\nTo: ana@example.com\r\nSubject: Re: Plan\r\n"
        f"Message-ID: <z1@example.org>\r\nIn-Reply-To: {sent.message_id}\r\n"
        f"References: {sent.message_id}\r\n\r\nSounds good.\r\n"
    ).encode()
    key = "imap:acct:7:42"
    first = box.commands.receive("Ana@Example.com", raw, source="imap:acct", key=key)
    assert first == str(received_id(ANA.email, key))
    assert box.commands.receive(ANA.email, raw, source="imap:acct", key=key) is None
    box.project()
    got = get_mail(box.read, ANA.email, first)
    assert got is not None
    assert (got.folder, got.from_addr, got.from_name, got.subject, got.source) == (
        "inbox",
        "zed@example.org",
        "Zed",
        "Re: Plan",
        "imap:acct",
    )
    assert got.thread_id == sent.thread_id and got.snippet == "Sounds good."
    assert list_folder(box.read, ANA.email, "inbox", None, 50, 0).pagination.total == 1
    # Without a key, each arrival is a mail of its own.
    assert box.commands.receive(ANA.email, raw, source="smtp") != first
    with pytest.raises(BlobTooLarge):
        box.commands.receive(ANA.email, b"x" * (64 * 1024 + 1), source="smtp")


def test_delivery_outcomes_move_the_status_and_the_outbox(box: Mailbox) -> None:
    mail_id, _ = box.commands.send(
        ANA, SendEmail(to=["zed@example.org", "bea@example.com"], bcc=["yan@example.net"])
    )
    assert box.due() == [mail_id]
    out = box.commands.outgoing(UUID(mail_id))
    assert (out.sender, out.recipients, out.attempts) == (
        ANA.email,
        ["zed@example.org", "yan@example.net"],  # bea is local: she has it already
        0,
    )
    message = parse_message(out.message)
    assert message.to == ["zed@example.org", "bea@example.com"] and b"yan@" not in out.message
    retry = datetime.now(UTC) + timedelta(seconds=60)
    box.commands.delivery_failed(UUID(mail_id), "451 try later", final=False, retry_at=retry)
    assert box.due() == [] and box.due(61) == [mail_id]
    assert box.commands.outgoing(UUID(mail_id)).attempts == 1
    row = get_mail(box.read, ANA.email, mail_id)
    assert row is not None
    assert (row.status, row.attempts, row.last_reply, row.next_attempt_at) == (
        "queued",
        1,
        "451 try later",
        rfc3339(retry),
    )
    saved = box.commands.delivered(UUID(mail_id), "250 OK queued as 12345")
    assert saved.notifications
    assert box.due(3600) == []
    row = get_mail(box.read, ANA.email, mail_id)
    assert row is not None and (row.status, row.last_reply) == ("sent", "250 OK queued as 12345")
    # Outcomes after the fact change nothing.
    assert box.commands.delivered(UUID(mail_id), "250 again").notifications == ()
    late = box.commands.delivery_failed(UUID(mail_id), "550 no", final=True, retry_at=None)
    assert late.notifications == ()
    # A final refusal fails the mail; a mail deleted for good is still delivered.
    refused, _ = box.commands.send(ANA, SendEmail(to=["zed@example.org"]))
    gone, _ = box.commands.send(ANA, SendEmail(to=["zed@example.org"]))
    box.commands.delete(ANA, UUID(gone), None)
    box.commands.delete(ANA, UUID(gone), None)
    assert box.due() == [refused, gone]
    box.commands.delivery_failed(UUID(refused), "550 no such user", final=True, retry_at=None)
    assert box.due() == [gone]
    row = get_mail(box.read, ANA.email, refused)
    assert row is not None and (row.status, row.next_attempt_at) == ("failed", None)
    assert get_mail(box.read, ANA.email, gone) is None
    assert box.commands.outgoing(UUID(gone)).message.startswith(b"Subject: ")
    with pytest.raises(NotFound):
        box.commands.outgoing(uuid.uuid4())


def test_without_a_relay_nothing_waits_for_one(tmp_path: Path) -> None:
    box = Mailbox(tmp_path, {"ana@example.com"}, relay=False)
    try:
        mail_id, _ = box.commands.send(ANA, SendEmail(to=["zed@example.org"]))
        assert box.due(3600) == []
        row = get_mail(box.read, ANA.email, mail_id)
        assert row is not None and row.status == "not_delivered"
    finally:
        box.close()
