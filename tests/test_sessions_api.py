"""Sessions over HTTP: conversations run deployed dialogs, survive restarts and rebuilds."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.profiles import drop_read_models
from tests.server import ServerProcess, UserClient, gbserver

GREETING = """TALK "Hello! What is your name?"
HEAR name
TALK "Nice to meet you, " + name + "."
HEAR city AS "Lisbon", "Porto"
TALK "${name} from ${city}"
"""

WITH_TASK = """CREATE TASK "Call " + "back", "ops@example.com", "2030-01-15", "high"
TALK "Task created. When should we talk?"
HEAR day
TALK "Noted: " + day
"""

LOOP = """TALK "thinking"
WHILE TRUE
  x = 1
WEND
"""


def deploy(client: httpx.Client, bot: str, name: str, content: str) -> str:
    r = client.post("/api/designer/dialogs", json={"name": name, "content": content, "bot_id": bot})
    assert r.status_code == 201, r.text
    dialog_id = str(r.json()["id"])
    d = client.post(f"/api/designer/dialogs/{dialog_id}/deploy")
    assert d.status_code in (200, 201), d.text
    return dialog_id


def redeploy(client: httpx.Client, dialog_id: str, content: str) -> None:
    assert (
        client.put(f"/api/designer/dialogs/{dialog_id}", json={"content": content}).status_code
        == 200
    )
    assert client.post(f"/api/designer/dialogs/{dialog_id}/deploy").status_code in (200, 201)


def open_session(client: httpx.Client, bot: str) -> str:
    r = client.post("/api/sessions", json={"bot_id": bot, "metadata": {"channel": "web"}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def say(client: httpx.Client, session_id: str, text: str) -> dict[str, object]:
    r = client.post(f"/api/sessions/{session_id}/messages", json={"content": text})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def all_events(admin: httpx.Client, after: int = 0) -> list[dict[str, Any]]:
    """The event log as the admin API pages it, after notification id `after`."""
    events: list[dict[str, Any]] = []
    while True:
        page = admin.get("/api/admin/events", params={"after": after, "limit": 200}).json()
        if not page["data"]:
            return events
        events += page["data"]
        after = page["next_after"]


def bot() -> str:
    return f"bot-{uuid.uuid4().hex[:8]}"


def test_a_conversation_runs_the_start_dialog(admin: httpx.Client) -> None:
    b = bot()
    deploy(admin, b, "start", GREETING)
    sid = open_session(admin, b)
    first = say(admin, sid, "hi")
    assert first["role"] == "assistant" and first["session_id"] == sid
    assert first["content"] == "Hello! What is your name?"
    assert first["parts"] == ["Hello! What is your name?"]
    assert str(first["timestamp"]).endswith("Z")
    second = say(admin, sid, "Ana")
    assert second["parts"] == ["Nice to meet you, Ana."]
    again = say(admin, sid, "Madrid")  # not an option: asked again
    assert again["content"] != ""
    third = say(admin, sid, "2")  # an option's number
    assert third["parts"] == ["Ana from Porto"]
    fallback = say(admin, sid, "anything else?")  # no HEAR waits: the answer pipeline
    assert fallback["content"] == "I'm sorry, I don't know the answer to that yet."

    history = admin.get(f"/api/sessions/{sid}").json()
    roles = [m["role"] for m in history["messages"]]
    assert roles == ["user", "assistant"] * 5
    assert history["messages"][0]["content"] == "hi"
    assert history["bot_id"] == b and history["status"] == "active"


def test_session_list_shape_and_filters(make_user: Callable[..., UserClient]) -> None:
    u = make_user()
    b = bot()
    sid = open_session(u, b)
    other = open_session(u, bot())
    u.post(f"/api/sessions/{other}/close")
    listed = u.get("/api/sessions").json()
    assert set(listed) == {"sessions", "total", "limit", "offset", "pagination"}
    assert listed["total"] == 2 and listed["limit"] == 50 and listed["offset"] == 0
    assert set(listed["sessions"][0]) == {
        "id",
        "user_id",
        "bot_id",
        "status",
        "created_at",
        "last_activity",
        "metadata",
    }
    assert [
        s["id"] for s in u.get("/api/sessions", params={"status": "active"}).json()["sessions"]
    ] == [sid]
    assert [s["id"] for s in u.get("/api/sessions", params={"bot_id": b}).json()["sessions"]] == [
        sid
    ]
    assert u.get("/api/sessions", params={"status": "open"}).status_code == 400


def test_closed_sessions_refuse_messages(admin: httpx.Client) -> None:
    sid = open_session(admin, bot())
    assert admin.post(f"/api/sessions/{sid}/close").json()["status"] == "closed"
    r = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hello?"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    assert admin.post(f"/api/sessions/{sid}/close").status_code == 409


def test_sessions_are_private(make_user: Callable[..., UserClient]) -> None:
    a, b = make_user(), make_user()
    sid = open_session(a, bot())
    assert b.get(f"/api/sessions/{sid}").status_code == 403
    assert b.post(f"/api/sessions/{sid}/messages", json={"content": "x"}).status_code == 403
    assert b.get("/api/sessions").json()["total"] == 0
    r = a.post("/api/sessions", json={"user_id": "someone@example.com"})
    assert r.status_code == 403
    assert a.get(f"/api/sessions/{uuid.uuid4()}").status_code == 404


def test_bad_messages_are_400(admin: httpx.Client) -> None:
    sid = open_session(admin, bot())
    for body in ({}, {"content": ""}, {"content": 5}, {"content": "x", "type": "video"}):
        r = admin.post(f"/api/sessions/{sid}/messages", json=body)
        assert r.status_code == 400, body
    assert admin.get(f"/api/sessions/{sid}").json()["messages"] == []


def test_a_retried_message_is_answered_once(admin: httpx.Client) -> None:
    b = bot()
    deploy(admin, b, "start", WITH_TASK)
    sid = open_session(admin, b)
    key = {"Idempotency-Key": f"m-{uuid.uuid4()}"}
    first = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=key)
    again = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=key)
    assert first.json() == again.json()
    assert len(admin.get(f"/api/sessions/{sid}").json()["messages"]) == 2


def test_an_infinite_loop_ends_the_turn_and_the_server_stays_responsive(
    admin: httpx.Client,
) -> None:
    b = bot()
    deploy(admin, b, "start", LOOP)
    sid = open_session(admin, b)
    answers: list[int] = []

    def probe() -> None:
        while not answers:
            assert admin.get("/api/health").status_code == 200
            time.sleep(0.05)

    watcher = threading.Thread(target=probe)
    watcher.start()
    reply = say(admin, sid, "go")
    answers.append(1)
    watcher.join()
    assert reply["parts"][0] == "thinking"  # type: ignore[index]
    assert "Sorry" in str(reply["content"])
    failed = [
        e
        for e in all_events(admin)
        if e["topic"] == "gbserver.sessions.DialogFailed" and e["aggregate_id"] == sid
    ]
    assert failed and failed[0]["data"]["line"] >= 2


def test_redeploy_does_not_change_a_running_conversation(admin: httpx.Client) -> None:
    b = bot()
    dialog_id = deploy(admin, b, "start", GREETING)
    sid = open_session(admin, b)
    say(admin, sid, "hi")
    redeploy(admin, dialog_id, 'TALK "v2"\nHEAR x\nTALK "v2 got " + x\n')
    assert say(admin, sid, "Rui")["parts"] == ["Nice to meet you, Rui."]
    newcomer = open_session(admin, b)
    assert say(admin, newcomer, "hi")["parts"] == ["v2"]


def test_a_paused_conversation_survives_restart_and_rebuild(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    b = bot()
    with srv.client() as c:
        deploy(c, b, "start", WITH_TASK)
        sid = open_session(c, b)
        assert say(c, sid, "hi")["parts"] == ["Task created. When should we talk?"]
    srv.stop()
    srv.start()
    with srv.client() as c:
        assert say(c, sid, "tomorrow")["parts"] == ["Noted: tomorrow"]
        tasks = [
            t
            for t in c.get("/api/tasks", params={"limit": 200}).json()["data"]
            if t["title"] == "Call back"
        ]
        assert len(tasks) == 1 and tasks[0]["priority"] == "high"
        assert tasks[0]["assignee"] == "ops@example.com"
        before = c.get(f"/api/sessions/{sid}").content
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    gbserver("rebuild", env=srv.env)
    srv.start()
    with srv.client() as c:
        assert c.get(f"/api/sessions/{sid}").content == before


def test_session_messages_are_paged(make_user: Callable[..., UserClient]) -> None:
    """Issue 7, reproduction 14: GET /api/sessions/:id returned every message. It embeds the
    latest 50 (oldest first) and their count; /messages pages through all of them."""
    user, other = make_user(), make_user()
    sid = open_session(user, bot())
    for i in range(30):
        say(user, sid, f"m{i}")

    pages: list[dict[str, Any]] = []
    for offset in (0, 25, 50):
        r = user.get(f"/api/sessions/{sid}/messages", params={"limit": 25, "offset": offset})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["pagination"] == {
            "total": 60,
            "limit": 25,
            "offset": offset,
            "has_more": offset + 25 < 60,
        }
        pages += body["data"]
    assert len(pages) == 60 and len({m["id"] for m in pages}) == 60
    assert [m["content"] for m in pages if m["role"] == "user"] == [f"m{i}" for i in range(30)]
    assert [m["role"] for m in pages[:2]] == ["user", "assistant"]

    detail = user.get(f"/api/sessions/{sid}").json()
    assert detail["message_count"] == 60
    assert detail["messages"] == pages[10:]  # the latest 50, in order

    default = user.get(f"/api/sessions/{sid}/messages").json()
    assert default["pagination"]["limit"] == 50 and default["data"] == pages[:50]
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": "x"}):
        r = user.get(f"/api/sessions/{sid}/messages", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert user.get(f"/api/sessions/{sid}/messages", params={"limit": 200}).status_code == 200
    assert other.get(f"/api/sessions/{sid}/messages").status_code == 403
    assert user.get(f"/api/sessions/{uuid.uuid4()}/messages").status_code == 404
    empty = open_session(user, bot())
    assert user.get(f"/api/sessions/{empty}").json()["message_count"] == 0
    assert user.get(f"/api/sessions/{empty}/messages").json() == {
        "data": [],
        "pagination": {"total": 0, "limit": 50, "offset": 0, "has_more": False},
    }
