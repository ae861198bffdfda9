"""Dialogs cannot stall a projection, poison the log or exhaust the server (issue 7).

Each test plays one of the issue's reproductions against a real server, on each profile:
text no store can hold, state bounded in bytes, a replaced dialog, shared bot memory under
concurrent first messages, outside calls and wall time per turn, and Idempotency-Key
retries after the session changed.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from commands.ports import ConcurrencyConflict, NotFound, Saved
from commands.sessions import (
    APOLOGY,
    NO_ANSWER,
    Deployed,
    SendMessage,
    SessionCommands,
    memory_id,
)
from commands.turn import TurnBudget, TurnLimits
from domain.basic import BudgetExceeded, parse, resume, start
from domain.common import Actor
from domain.sessions import Memory, Session
from infra.config import ConfigError, Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from tests.basic.fakes import FakePlatform
from tests.fakellm import FakeLlm
from tests.server import ServerProcess, free_port
from tests.test_sessions_api import all_events, bot, deploy, open_session, say

NUL_AT_RUN_TIME = """bad = JSON("\\"" + "\\\\" + "u0000\\"")
half = JSON("\\"\\\\ud800\\"")
TALK "a" + bad + "b" + half
ADD SUGGESTION "s" + bad AS "l" + half
SET BOT MEMORY "k" + bad, "v" + half
SET USER MEMORY "u", [bad, #{ x: bad }]
CREATE TASK "task {marker}" + bad, "ops" + bad + "@example.com", "2030-01-15", "high"
HEAR answer
THROW "failed on " + bad
"""


def _log_end(admin: httpx.Client) -> int:
    events = all_events(admin)
    return int(events[-1]["id"]) if events else 0


def _size(event: dict[str, Any]) -> int:
    return len(json.dumps(event["data"], ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _failures(admin: httpx.Client, session_id: str) -> list[str]:
    return [
        str(e["data"]["message"])
        for e in all_events(admin)
        if e["topic"] == "gbserver.sessions.DialogFailed" and e["aggregate_id"] == session_id
    ]


# --- 3: text no store can hold ------------------------------------------------------------


def test_text_a_dialog_makes_is_normalised_before_it_reaches_an_event(
    admin: httpx.Client,
) -> None:
    b = bot()
    marker = uuid.uuid4().hex[:8]
    deploy(admin, b, "start", NUL_AT_RUN_TIME.replace("{marker}", marker))
    before = _log_end(admin)
    sid = open_session(admin, b)

    first = say(admin, sid, "hi")
    assert first["parts"] == ["a\ufffdb\ufffd"]
    assert first["suggestions"] == [{"text": "s\ufffd", "label": "l\ufffd"}]
    second = say(admin, sid, "go on")
    assert second["parts"] == [APOLOGY]
    assert _failures(admin, sid) == ["failed on \ufffd"]

    # The read models took every event: the session, its messages and the task.
    history = admin.get(f"/api/sessions/{sid}").json()["messages"]
    assert [m["content"] for m in history] == ["hi", "a\ufffdb\ufffd", "go on", APOLOGY]
    tasks = admin.get("/api/tasks", params={"limit": 200}).json()["data"]
    (task,) = [t for t in tasks if marker in t["title"]]
    assert task["title"] == f"task {marker}\ufffd"
    assert task["assignee"] == "ops\ufffd@example.com"
    assert admin.get("/api/health").json()["components"]["projections"] == "ok"

    # Nothing the turns wrote holds U+0000 or a lone surrogate (memory, state included).
    written = json.dumps([e["data"] for e in all_events(admin, after=before)], ensure_ascii=False)
    assert "\x00" not in written and "\ud800" not in written
    assert '"k\ufffd"' in written and '"v\ufffd"' in written  # memory keys and values
    assert '["\ufffd",{"x":"\ufffd"}]' in written.replace(" ", "")


# --- 4: state and writes bounded in bytes -------------------------------------------------

APPENDS = """s = "{chunk}"
FOR i = 1 TO {doublings}
  s = s + s
NEXT
items = []
DO
  FOR i = 1 TO 3000
    items.PUSH(s)
  NEXT
  HEAR answer
LOOP
"""


def _database_mb(admin: httpx.Client) -> float:
    return float(admin.get("/api/admin/stats").json()["database_size_mb"])


@pytest.mark.parametrize(
    ("chunk", "doublings", "limit"),
    [
        ("xxxxx", 14, "GB_TURN_MAX_VALUE_BYTES"),  # the 81,920 characters
        ("xx", 12, "GB_TURN_MAX_STATE_BYTES"),  # 8,192: each fits, the state does not
    ],
)
def test_a_dialog_appending_3000_large_strings_writes_a_bounded_amount(
    admin: httpx.Client, chunk: str, doublings: int, limit: str
) -> None:
    b = bot()
    deploy(admin, b, "start", APPENDS.format(chunk=chunk, doublings=doublings))
    sid = open_session(admin, b)
    before = _log_end(admin)
    replies = []
    for text in ("hi", "again"):
        size = _database_mb(admin)
        replies.append(say(admin, sid, text)["parts"])
        assert _database_mb(admin) - size < 1.0
    assert replies == [[APOLOGY], [NO_ANSWER]]  # the dialog ended at its limit
    written = all_events(admin, after=before)
    assert sum(_size(e) for e in written) < 64 * 1024
    (failure,) = _failures(admin, sid)
    assert limit in failure


def test_memory_set_in_a_loop_is_one_write_and_writes_are_bounded(admin: httpx.Client) -> None:
    b = bot()
    deploy(
        admin,
        b,
        "start",
        'FOR i = 1 TO 3000\n  SET BOT MEMORY "n", i\nNEXT\nTALK GET BOT MEMORY("n")\n',
    )
    before = _log_end(admin)
    assert say(admin, open_session(admin, b), "hi")["parts"] == ["3000"]
    sets = [e for e in all_events(admin, after=before) if e["topic"].endswith(".MemorySet")]
    assert [e["data"]["value"] for e in sets] == [3000]

    many = bot()
    deploy(
        admin,
        many,
        "start",
        's = "x"\nFOR i = 1 TO 15\n  s = s + s\nNEXT\n'  # 32,768 characters
        'FOR i = 1 TO 100\n  SET BOT MEMORY "k" + i, s\nNEXT\nTALK "stored"\n',
    )
    sid = open_session(admin, many)
    before = _log_end(admin)
    assert say(admin, sid, "hi")["parts"] == [APOLOGY]
    assert "GB_TURN_MAX_EVENT_BYTES" in _failures(admin, sid)[0]
    assert sum(_size(e) for e in all_events(admin, after=before)) < 448 * 1024


def test_the_turn_limits_are_settings(fresh_server: Callable[..., ServerProcess]) -> None:
    srv = fresh_server(
        GB_TURN_MAX_STATE_BYTES="4096",
        GB_TURN_MAX_VALUE_BYTES="1024",
        GB_TURN_MAX_EVENT_BYTES="8192",
    )
    with srv.client() as c:
        b = bot()
        deploy(
            c,
            b,
            "start",
            'items = []\nFOR i = 1 TO 400\n  items.PUSH("0123456789" + i)\nNEXT\nHEAR x\n',
        )
        sid = open_session(c, b)
        assert say(c, sid, "hi")["parts"] == [APOLOGY]
        assert "4,096 bytes" in _failures(c, sid)[0]
        value = bot()
        deploy(c, value, "start", 's = "x"\nFOR i = 1 TO 11\n  s = s + s\nNEXT\nTALK "ok"\n')
        vid = open_session(c, value)
        assert say(c, vid, "hi")["parts"] == [APOLOGY]
        assert "1,024 bytes" in _failures(c, vid)[0]


# --- 6: a deleted or replaced dialog ------------------------------------------------------


def test_a_replaced_dialog_takes_effect_at_once(admin: httpx.Client) -> None:
    b = bot()
    old = deploy(admin, b, "start", 'TALK "old text"\nHEAR x\nTALK "old got " + x\n')
    waiting = open_session(admin, b)
    assert say(admin, waiting, "hi")["parts"] == ["old text"]
    assert say(admin, open_session(admin, b), "hi")["parts"] == ["old text"]

    assert admin.delete(f"/api/designer/dialogs/{old}").status_code in (200, 204)
    deploy(admin, b, "start", 'TALK "new text"\nHEAR x\nTALK "new got " + x\n')  # v1 again
    assert say(admin, open_session(admin, b), "hi")["parts"] == ["new text"]
    # A conversation paused in the old dialog goes on in exactly that dialog.
    assert say(admin, waiting, "Ana")["parts"] == ["old got Ana"]


# --- 8: shared bot memory under concurrent first messages ---------------------------------

COUNTER = """n = VAL(GET BOT MEMORY("count")) + 1
SET BOT MEMORY "count", n
SET USER MEMORY "seen", n
TALK "visitor " + n
"""


def test_fifty_concurrent_first_messages_of_one_bot_all_succeed(
    server: ServerProcess, admin: httpx.Client
) -> None:
    b = bot()
    deploy(admin, b, "start", COUNTER)
    sessions = [
        admin.post("/api/sessions", json={"bot_id": b, "user_id": f"u{i}-{b}@example.com"}).json()[
            "id"
        ]
        for i in range(50)
    ]
    clients = [server.client() for _ in sessions]

    def first_message(i: int) -> httpx.Response:
        return clients[i].post(f"/api/sessions/{sessions[i]}/messages", json={"content": "hi"})

    try:
        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            replies = list(pool.map(first_message, range(len(sessions))))
    finally:
        for client in clients:
            client.close()
    assert [r.status_code for r in replies] == [200] * 50, [r.text for r in replies]
    visitors = sorted(int(r.json()["parts"][0].split()[-1]) for r in replies)
    assert visitors == list(range(1, 51))
    assert say(admin, open_session(admin, b), "hi")["parts"] == ["visitor 51"]


# --- 10: outside calls and wall time per turn ---------------------------------------------

LLM_LOOP = """ON ERROR RESUME NEXT
FOR i = 1 TO 3000
  answer = LLM "question " + i
NEXT
TALK "done"
"""


def test_outside_calls_in_one_turn_stop_at_the_cap(
    llm: FakeLlm, fresh_server: Callable[..., ServerProcess]
) -> None:
    srv = fresh_server(GB_LLM_URL=llm.url, GB_LLM_MODEL="fake-model")
    with srv.client() as c:
        b = bot()
        deploy(c, b, "start", LLM_LOOP)
        sid = open_session(c, b)
        reply = say(c, sid, "go")
        assert reply["parts"] == [APOLOGY]
        assert len(llm.requests) == 10  # GB_TURN_MAX_CALLS' default
        assert "GB_TURN_MAX_CALLS" in _failures(c, sid)[0]
        # The next message has a budget of its own: the answer pipeline asks the LLM.
        assert say(c, sid, "and now?")["parts"] == ["LLM: and now?"]

    capped = fresh_server(GB_LLM_URL=llm.url, GB_TURN_MAX_CALLS="3")
    llm.requests.clear()
    with capped.client() as c:
        b = bot()
        deploy(c, b, "start", 'a = LLM "one"\nb = LLM "two"\nTALK a + " / " + b\n')
        assert say(c, open_session(c, b), "go")["parts"] == ["LLM: one / LLM: two"]
        deploy(c, b + "x", "start", LLM_LOOP)
        assert say(c, open_session(c, b + "x"), "go")["parts"] == [APOLOGY]
        assert len(llm.requests) == 2 + 3


class SlowLlm:
    """A chat-completions server that takes `delay` seconds per answer."""

    def __init__(self, delay: float) -> None:
        self.port = free_port()
        self.requests = 0
        slow = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._reply({"object": "list", "data": [{"id": "slow"}]})

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                slow.requests += 1
                time.sleep(delay)
                self._reply({"choices": [{"message": {"role": "assistant", "content": "ok"}}]})

            def _reply(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_turn_stops_at_its_wall_time(fresh_server: Callable[..., ServerProcess]) -> None:
    slow = SlowLlm(0.25)
    try:
        srv = fresh_server(
            GB_LLM_URL=f"http://127.0.0.1:{slow.port}/v1",
            GB_TURN_SECONDS="1",
            GB_TURN_MAX_CALLS="1000",
        )
        with srv.client() as c:
            b = bot()
            deploy(c, b, "start", LLM_LOOP)
            sid = open_session(c, b)
            assert say(c, sid, "go")["parts"] == [APOLOGY]
            assert "GB_TURN_SECONDS" in _failures(c, sid)[0]
            assert 1 <= slow.requests <= 6  # 1 s of 0.25 s answers, not 3,000
    finally:
        slow.close()


def test_one_llm_call_may_not_outlast_the_turn(fresh_server: Callable[..., ServerProcess]) -> None:
    """The call gets what is left of GB_TURN_SECONDS as its timeout, not GB_LLM_TIMEOUT."""
    slow = SlowLlm(4.0)
    try:
        srv = fresh_server(GB_LLM_URL=f"http://127.0.0.1:{slow.port}/v1", GB_TURN_SECONDS="1")
        with srv.client() as c:
            b = bot()
            deploy(c, b, "start", 'a = LLM "slow"\nTALK "answered " + a\n')
            sid = open_session(c, b)
            assert say(c, sid, "go")["parts"] == [APOLOGY]  # not "answered ok" after 4 s
            assert slow.requests == 1
    finally:
        slow.close()


def test_the_wall_time_stops_a_busy_loop_that_ignores_errors() -> None:
    """No outside call at all: the machine's checkpoint ends the turn (unit level)."""
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01
        return now[0]

    program = parse("ON ERROR RESUME NEXT\nWHILE TRUE\n  x = 1\nWEND\n", dialog="m", version=1)
    budget = TurnBudget(TurnLimits(seconds=1.0), clock)
    turn = resume(
        start(program, dialog="m", version=1),
        lambda name, version: program,
        None,
        FakePlatform(),
        checkpoint=budget.check_time,
    )
    assert turn.error is not None and "GB_TURN_SECONDS" in turn.error.message
    assert 1.0 < now[0] < 1.1  # stopped at its first check past the deadline
    with pytest.raises(BudgetExceeded):
        budget.check_time()


# --- 11: Idempotency-Key retries answer their first result ---------------------------------


def test_a_retried_message_answers_its_first_reply_after_the_session_closed(
    admin: httpx.Client,
) -> None:
    b = bot()
    marker = uuid.uuid4().hex[:8]
    deploy(admin, b, "start", f'CREATE TASK "once {marker}", "", "", "low"\nTALK "made"\n')
    sid = open_session(admin, b)
    key = {"Idempotency-Key": f"m-{uuid.uuid4()}"}
    first = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=key)
    assert first.status_code == 200
    assert admin.post(f"/api/sessions/{sid}/close").status_code == 200

    again = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    tasks = admin.get("/api/tasks", params={"limit": 200}).json()["data"]
    assert len([t for t in tasks if marker in t["title"]]) == 1
    other = admin.post(f"/api/sessions/{sid}/messages", json={"content": "bye"}, headers=key)
    assert other.status_code == 409  # the key names another request
    fresh = admin.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
    assert fresh.status_code == 409  # without the key the session is closed


def test_turn_settings_are_read_and_checked() -> None:
    defaults = Settings.from_env({})
    assert (defaults.turn_max_state_bytes, defaults.turn_max_value_bytes) == (262144, 65536)
    assert (defaults.turn_max_event_bytes, defaults.turn_max_calls) == (393216, 10)
    assert defaults.turn_seconds == 10.0
    chosen = Settings.from_env(
        {
            "GB_TURN_MAX_STATE_BYTES": "8192",
            "GB_TURN_MAX_VALUE_BYTES": "2048",
            "GB_TURN_MAX_EVENT_BYTES": "16384",
            "GB_TURN_MAX_CALLS": "2",
            "GB_TURN_SECONDS": "2.5",
        }
    )
    assert (chosen.turn_max_state_bytes, chosen.turn_max_value_bytes) == (8192, 2048)
    assert (chosen.turn_max_event_bytes, chosen.turn_max_calls, chosen.turn_seconds) == (
        16384,
        2,
        2.5,
    )
    for bad in (
        {"GB_TURN_MAX_EVENT_BYTES": str(512 * 1024)},  # an event could not hold it
        {"GB_TURN_MAX_STATE_BYTES": str(400 * 1024)},  # more than the turn may write
        {"GB_TURN_MAX_VALUE_BYTES": str(300 * 1024)},  # more than the state may keep
        {"GB_TURN_MAX_CALLS": "0"},
        {"GB_TURN_SECONDS": "-1"},
        {"GB_TURN_MAX_STATE_BYTES": "lots"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


# --- which races re-run a turn (unit level, on an embedded event store) --------------------


class OneDialog:
    """A catalog with one deployed `start` dialog."""

    def __init__(self, source: str) -> None:
        self.deployed = Deployed("dialog-1", 1, source)

    def live(self, bot_id: str, name: str) -> Deployed | None:
        return self.deployed if name == "start" else None

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        return self.live(bot_id, name)

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        return self.deployed


class Interfering:
    """An event store that lets `meddle` save something just before the first save."""

    def __init__(self, store: EventStoreAdapter, meddle: Callable[[], None]) -> None:
        self.store = store
        self.meddle: Callable[[], None] | None = meddle
        self.saves = 0

    def save(self, *aggregates: Any) -> Saved:
        if self.meddle is not None:
            meddle, self.meddle = self.meddle, None
            meddle()
        self.saves += 1
        return self.store.save(*aggregates)

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        return self.store.get(aggregate_id, version)

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        return self.store.history(aggregate_id)


@pytest.fixture
def event_store(tmp_path: Path) -> Iterator[EventStoreAdapter]:
    app = GBApplication(Settings(data_dir=tmp_path))
    yield EventStoreAdapter(app)
    app.close()


def test_a_lost_race_on_bot_memory_reruns_the_turn_on_fresh_state(
    event_store: EventStoreAdapter,
) -> None:
    actor = Actor("a@example.com")
    session = Session(owner=actor.email, bot_id="b", user_id=actor.email, metadata={})
    event_store.save(session)

    def another_user_counts() -> None:
        memory = Memory(scope="bot:b", id=memory_id("bot:b"))
        memory.set("count", 41)
        event_store.save(memory)

    store = Interfering(event_store, another_user_counts)
    commands = SessionCommands(store, OneDialog(COUNTER))
    reply_id, _ = commands.send(actor, session.id, SendMessage(content="hi"))
    assert store.saves == 2  # the first attempt lost, the second read 41
    replies = [e for e in event_store.history(session.id) if type(e).__name__ == "ReplySent"]
    assert [(e.message_id, e.parts) for e in replies] == [(reply_id, ["visitor 42"])]
    assert event_store.get(memory_id("bot:b")).values == {"count": 42}


def test_a_lost_race_on_the_session_itself_is_not_rerun(event_store: EventStoreAdapter) -> None:
    actor = Actor("a@example.com")
    session = Session(owner=actor.email, bot_id="b", user_id=actor.email, metadata={})
    event_store.save(session)

    def another_message() -> None:
        same = event_store.get(session.id)
        same.receive("other", "hello", "text")
        event_store.save(same)

    store = Interfering(event_store, another_message)
    commands = SessionCommands(store, OneDialog(COUNTER))
    with pytest.raises(ConcurrencyConflict, match="another message to this session"):
        commands.send(actor, session.id, SendMessage(content="hi"))
    assert store.saves == 1
    with pytest.raises(NotFound):
        event_store.get(memory_id("bot:b"))
