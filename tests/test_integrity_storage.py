"""What the event store takes: bounded events, user data that is never a type tag, only
storable text, and snapshots for the long streams.

Unit tests drive the transcoder and the application directly; API tests run a server per
profile (a type-tag-shaped object through a session and a dialog's memory, an oversized
document, a long session and document across a restart and a rebuild).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    StoredEvent,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from api.errors import handle_exception
from commands.ports import MAX_EVENT_BYTES, EventTooLarge, UnstorableText
from domain.paper import PaperDocument
from domain.sessions import Memory, Session
from infra import eventstore
from infra.config import Settings
from infra.eventstore import SNAPSHOT_INTERVAL, EventStoreAdapter, GBApplication
from infra.transcoder import DataTranscoder
from tests.profiles import drop_read_models
from tests.server import ServerProcess, UserClient, gbserver

NOW = datetime(2030, 1, 15, 17, 0, tzinfo=UTC)
AN_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def library_transcoder() -> JSONTranscoder:
    """The library's own transcoder, as the application registered it before."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


@pytest.fixture(scope="module")
def transcoder(tmp_path_factory: pytest.TempPathFactory) -> DataTranscoder:
    """The application's own transcoder."""
    data = tmp_path_factory.mktemp("transcoder")
    app = GBApplication(Settings.from_env({"GB_DATA_DIR": str(data)}))
    assert isinstance(app.mapper.transcoder, DataTranscoder)
    assert app.snapshots is not None and app.snapshots.mapper.transcoder is app.mapper.transcoder
    return app.mapper.transcoder


def reserved_shapes(names: list[str]) -> dict[str, Any]:
    """Every JSON object the transcoder could take for a tag, or for an escaped one."""
    shapes: dict[str, Any] = {}
    for name in [*names, "nope", "", "UUID_HEX", "gb_dict ", "uuid"]:
        data: Any
        for data in (1, None, "x", "not-a-uuid", AN_ID.hex, "2030-01-15", "1.5", [], {}):
            shapes[f"{name}/{data!r}"] = {"_type_": name, "_data_": data}
        shapes[f"{name}/reversed"] = {"_data_": [["a", 1]], "_type_": name}
    shapes.update(
        {
            "escaped-looking": {"_type_": "gb_dict", "_data_": [["_type_", "x"], ["_data_", 1]]},
            "escaped-bad-pairs": {"_type_": "gb_dict", "_data_": [["a"], [1, 2], "z"]},
            "nested": {"_type_": "nope", "_data_": {"_type_": "nope", "_data_": {"k": [1]}}},
            "in-list": [{"_type_": "uuid_hex", "_data_": AN_ID.hex}, {"_type_": "x", "_data_": 0}],
            "only-type": {"_type_": "uuid_hex"},
            "only-data": {"_data_": AN_ID.hex},
            "three-keys": {"_type_": "uuid_hex", "_data_": AN_ID.hex, "more": True},
            "type-not-text": {"_type_": ["uuid_hex"], "_data_": 1},
            "type-is-dict": {"_type_": {"_type_": "nope", "_data_": 1}, "_data_": 1},
            "near-keys": {"__type_": "x", "_data__": 1, "_type": 2, "type": 3},
            "key-ending-in-tag": {'a"_type_': 1, "b": '"_type_":'},
            "literal-nul-text": "\\u0000 is six characters",
            "empty": {},
        }
    )
    return shapes


def test_every_reserved_shape_round_trips_unchanged(transcoder: DataTranscoder) -> None:
    names = sorted(transcoder.names)
    assert set(names) == set(library_transcoder().names) | {"gb_dict"}
    shapes = reserved_shapes(names)
    state = {
        "timestamp": NOW,
        "id": AN_ID,
        "amount": Decimal("1.50"),
        "metadata": shapes,
        "values": [shapes, {"deep": [[shapes]]}],
    }
    decoded = transcoder.decode(transcoder.encode(state))
    assert decoded == state
    assert type(decoded["id"]) is uuid.UUID and type(decoded["amount"]) is Decimal
    assert decoded["timestamp"] == NOW and decoded["timestamp"].tzinfo is not None
    # Each shape alone too (the top level is the event's state, a dict like any other).
    for name, shape in shapes.items():
        assert transcoder.decode(transcoder.encode({"v": shape})) == {"v": shape}, name
        assert transcoder.decode(transcoder.encode(shape)) == shape, name
    # The library's transcoder, used before, refused some and turned others into values.
    library = library_transcoder()
    with pytest.raises(TranscodingNotRegisteredError):
        library.decode(library.encode({"v": shapes["nope/1"]}))
    as_uuid = library.decode(library.encode({"v": shapes[f"uuid_hex/{AN_ID.hex!r}"]}))
    assert as_uuid == {"v": AN_ID}


def test_plain_data_keeps_the_library_format_and_old_events_decode(
    transcoder: DataTranscoder,
) -> None:
    ours, library = transcoder, library_transcoder()
    typical = {
        "timestamp": NOW,
        "originator_topic": "gbserver.sessions.Session",
        "owner": "ana@example.com",
        "metadata": {"channel": "web", "tags": ["é€😀", None, 1.5, True]},
        "id": AN_ID,
    }
    assert ours.encode(typical) == library.encode(typical)
    assert ours.decode(library.encode(typical)) == typical
    # Saved before escaping existed: user dicts shaped like tags, written as they were.
    old = (
        b'{"metadata":{"x":{"_type_":"nope","_data_":1},'
        b'"y":{"_type_":"uuid_hex","_data_":"not-a-uuid"},'
        b'"z":{"_type_":"datetime_iso","_data_":5}},'
        b'"timestamp":{"_type_":"datetime_iso","_data_":"2030-01-15T17:00:00+00:00"}}'
    )
    assert ours.decode(old) == {
        "metadata": {
            "x": {"_type_": "nope", "_data_": 1},
            "y": {"_type_": "uuid_hex", "_data_": "not-a-uuid"},
            "z": {"_type_": "datetime_iso", "_data_": 5},
        },
        "timestamp": NOW,
    }


@pytest.mark.parametrize(
    ("state", "path"),
    [
        ({"metadata": {"note": "a\x00b"}}, "metadata.note"),
        ({"metadata": {"a\x00": 1}}, "metadata.a\ufffd"),
        ({"value": ["ok", {"deep": ["\ud800"]}]}, "value[1].deep[0]"),
        ({"value": {"\udfff": "x"}}, "value.\ufffd"),
        ({"state": ("x", "\ud83d")}, "state[1]"),
        ({"metadata": {"_type_": "nope", "_data_": "\x00"}}, "metadata._data_"),
        ({"title": "\x00"}, "title"),
    ],
)
def test_unstorable_text_is_refused_with_where_it_is(
    transcoder: DataTranscoder, state: dict[str, Any], path: str
) -> None:
    with pytest.raises(UnstorableText) as refused:
        transcoder.encode({"timestamp": NOW, **state})
    assert refused.value.path == path
    assert "U+0000 or a lone surrogate" in str(refused.value)
    str(refused.value).encode("utf8")  # the message itself is storable and printable
    response = handle_exception(cast(Any, None), refused.value)
    assert response.status_code == 400
    body = cast(Any, response.content)
    assert body.error.code == "BAD_REQUEST" and body.error.details[0]["field"] == path


def test_too_large_maps_to_413() -> None:
    response = handle_exception(cast(Any, None), EventTooLarge("gbserver.paper.X", 600_000))
    assert response.status_code == 413
    body = cast(Any, response.content)
    assert body.error.code == "PAYLOAD_TOO_LARGE"
    assert "too large to record (600,000 bytes encoded, at most 524,288)" in body.error.message
    assert body.error.details == [{"size": 600_000, "limit": MAX_EVENT_BYTES}]


@pytest.fixture
def store(tmp_path: Path) -> EventStoreAdapter:
    return EventStoreAdapter(GBApplication(Settings.from_env({"GB_DATA_DIR": str(tmp_path)})))


def test_an_event_over_the_bound_is_refused_and_nothing_of_its_save_lands(
    store: EventStoreAdapter,
) -> None:
    small = PaperDocument(owner="a@example.com", title="t", content="x", type="note")
    store.save(small)
    head = store.max_notification_id()
    # The bound is on the encoded state: quotes double in JSON, so this content of 300,000
    # characters encodes to over 600,000 bytes.
    quoted = PaperDocument(owner="a@example.com", title="t", content='"' * 300_000, type="note")
    with pytest.raises(EventTooLarge) as refused:
        store.save(quoted)
    assert refused.value.topic == "gbserver.paper.PaperCreated"
    assert refused.value.size > 600_000
    # One event too large in a save of several: none of them is recorded.
    small.revise("a@example.com", {"title": "renamed"})
    big = PaperDocument(owner="a@example.com", title="t", content="y" * MAX_EVENT_BYTES, type="n")
    with pytest.raises(EventTooLarge):
        store.save(small, big)
    assert store.max_notification_id() == head
    assert store.get(small.id).title == "t"
    # Just under the bound is fine.
    fits = PaperDocument(owner="a@example.com", title="t", content="z" * 500_000, type="note")
    store.save(fits)
    assert store.get(fits.id).content == "z" * 500_000


def test_long_streams_load_from_snapshots_kept_out_of_the_log(
    store: EventStoreAdapter, tmp_path: Path
) -> None:
    metadata = {"tag": {"_type_": "nope", "_data_": 1}}
    session = Session(owner="a@example.com", bot_id="b", user_id="a@example.com", metadata=metadata)
    for i in range(SNAPSHOT_INTERVAL + 10):
        session.receive(f"m{i}", f"text {i}", "text")
        if i % 7 == 0:
            store.save(session)
    session.suspend({"vars": {"o": {"_type_": "x", "_data_": [1]}}, "pc": 3})
    store.save(session)
    memory = Memory(scope="bot:b", id=uuid.uuid4())
    for i in range(SNAPSHOT_INTERVAL):
        memory.set(key="k", value={"_type_": "nope", "_data_": i})
    store.save(memory)
    snapshots = store.app.snapshots
    assert snapshots is not None
    taken = [s.originator_version for s in snapshots.get(session.id)]
    assert taken == [SNAPSHOT_INTERVAL]
    assert [s.originator_version for s in snapshots.get(memory.id)] == [SNAPSHOT_INTERVAL]
    # Snapshots are not in the notification log (so not projected nor published).
    topics = {n.topic for n in store.notifications(0, 10_000)}
    assert not any("Snapshot" in t for t in topics)
    assert store.max_notification_id() == session.version + memory.version
    # A restarted application loads from the snapshot and the events after it.
    reopened = EventStoreAdapter(GBApplication(Settings.from_env({"GB_DATA_DIR": str(tmp_path)})))
    loaded = reopened.get(session.id)
    assert loaded.version == session.version and loaded.metadata == metadata
    assert loaded.dialog_state == {"vars": {"o": {"_type_": "x", "_data_": [1]}}, "pc": 3}
    assert reopened.get(memory.id).values == {"k": {"_type_": "nope", "_data_": 49}}
    assert reopened.get(session.id, version=3).version == 3
    assert len(reopened.history(session.id)) == session.version


def test_snapshots_of_other_code_or_unreadable_are_skipped(
    store: EventStoreAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = PaperDocument(owner="a@example.com", title="t", content="", type="note")
    for i in range(SNAPSHOT_INTERVAL + 2):
        doc.revise("a@example.com", {"content": str(i)})
    store.save(doc)
    snapshots = store.app.snapshots
    assert snapshots is not None
    assert [s.originator_version for s in snapshots.get(doc.id)] == [SNAPSHOT_INTERVAL]
    expected = (doc.version, doc.content)
    # Taken by other code (an attribute added, a mutator changed): loaded from the events.
    monkeypatch.setattr(eventstore, "code_stamp", lambda cls: "other code")
    assert list(snapshots.get(doc.id)) == []
    loaded = store.get(doc.id)
    assert (loaded.version, loaded.content) == expected
    monkeypatch.undo()
    # A newer snapshot that cannot be read is passed over for the events too.
    snapshots.recorder.insert_events(
        [
            StoredEvent(
                originator_id=doc.id,
                originator_version=doc.version,
                topic="eventsourcing.domain:Snapshot",
                state=b'{"topic":"nowhere:Gone","state":{},"code":"x"}',
            )
        ]
    )
    loaded = store.get(doc.id)
    assert (loaded.version, loaded.content) == expected
    assert store.get(doc.id, version=SNAPSHOT_INTERVAL + 1).content == str(SNAPSHOT_INTERVAL - 1)


def test_a_snapshot_that_cannot_be_taken_does_not_fail_the_save(
    store: EventStoreAdapter,
) -> None:
    seen: list[int] = []
    store.app.on_saved(lambda last, topics: seen.append(last))
    snapshots = store.app.snapshots
    assert snapshots is not None

    def refuse(*_: Any, **__: Any) -> None:
        raise RuntimeError("snapshot store down")

    snapshots.put = refuse  # type: ignore[method-assign,assignment]
    doc = PaperDocument(owner="a@example.com", title="t", content="", type="note")
    for i in range(SNAPSHOT_INTERVAL):
        doc.revise("a@example.com", {"content": str(i)})
    saved = store.save(doc)
    assert len(saved.notifications) == SNAPSHOT_INTERVAL + 1
    assert seen == [store.max_notification_id()]
    assert store.get(doc.id).content == str(SNAPSHOT_INTERVAL - 1)


# --- over HTTP, per profile -------------------------------------------------------------

TAG = {"_type_": "nope", "_data_": 1}
SHAPES: dict[str, Any] = {
    "tag": TAG,
    "uuid": {"_type_": "uuid_hex", "_data_": "not-a-uuid"},
    "real-uuid-looking": {"_type_": "uuid_hex", "_data_": AN_ID.hex},
    "datetime": {"_type_": "datetime_iso", "_data_": "yesterday"},
    "decimal": {"_type_": "decimal_str", "_data_": "1.5"},
    "escaped": {"_type_": "gb_dict", "_data_": [["_type_", "x"], ["_data_", 1]]},
    "half": {"_type_": "uuid_hex"},
    "nested": [{"_type_": "nope", "_data_": {"_type_": "nope", "_data_": 2}}],
}


def all_events(admin: httpx.Client) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        r = admin.get("/api/admin/events", params={"after": after, "limit": 200})
        assert r.status_code == 200, r.text
        page = r.json()
        if not page["data"]:
            return events
        events += page["data"]
        after = page["next_after"]


def deploy(client: httpx.Client, bot: str, name: str, content: str) -> None:
    r = client.post("/api/designer/dialogs", json={"name": name, "content": content, "bot_id": bot})
    assert r.status_code == 201, r.text
    d = client.post(f"/api/designer/dialogs/{r.json()['id']}/deploy")
    assert d.status_code in (200, 201), d.text


def say(client: httpx.Client, session_id: str, text: str) -> dict[str, Any]:
    r = client.post(f"/api/sessions/{session_id}/messages", json={"content": text})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_session_metadata_shaped_like_type_tags_is_kept_as_data(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    user = make_user()
    bot = f"bot-{uuid.uuid4().hex[:8]}"
    r = user.post("/api/sessions", json={"bot_id": bot, "metadata": SHAPES})
    # 201 once the sessions projection applied it (202 meant it stalled behind the event).
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == SHAPES
    sid = r.json()["id"]
    assert user.get(f"/api/sessions/{sid}").json()["metadata"] == SHAPES
    later = user.post("/api/sessions", json={"bot_id": bot, "metadata": {"plain": True}})
    assert later.status_code == 201, later.text
    listed = user.get("/api/sessions", params={"bot_id": bot}).json()["sessions"]
    assert {s["id"]: s["metadata"] for s in listed} == {
        sid: SHAPES,
        later.json()["id"]: {"plain": True},
    }
    created = [e for e in all_events(admin) if e["aggregate_id"] == sid]
    assert created[0]["data"]["metadata"] == SHAPES


def test_a_dialog_memory_shaped_like_a_type_tag_stays_loadable(admin: httpx.Client) -> None:
    bot = f"bot-{uuid.uuid4().hex[:8]}"
    deploy(
        admin,
        bot,
        "start",
        'o = JSON("{\\"_type_\\": \\"nope\\", \\"_data_\\": 1}")\n'
        'SET BOT MEMORY "k", o\n'
        'SET USER MEMORY "k", JSON("[{\\"_type_\\": \\"uuid_hex\\", \\"_data_\\": \\"zz\\"}]")\n'
        "HEAR y\n"
        'TALK TOJSON(GET BOT MEMORY "k")\n'
        'TALK TOJSON(GET USER MEMORY "k")\n',
    )
    first = admin.post("/api/sessions", json={"bot_id": bot})
    assert first.status_code == 201, first.text
    say(admin, first.json()["id"], "hi")
    bot_value, user_value = say(admin, first.json()["id"], "again")["parts"]
    assert json.loads(bot_value) == TAG
    assert json.loads(user_value) == [{"_type_": "uuid_hex", "_data_": "zz"}]
    # Another conversation loads the bot's memory again, from the store.
    second = admin.post("/api/sessions", json={"bot_id": bot})
    assert second.status_code == 201, second.text
    say(admin, second.json()["id"], "hi")
    assert json.loads(say(admin, second.json()["id"], "more")["parts"][0]) == TAG
    assert all_events(admin)  # every event decodes (the admin log answers 200)


def test_an_oversized_document_is_refused_with_413_and_not_saved(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    user = make_user()
    head = len(all_events(admin))
    huge = "# big\n" + "x" * 800_000  # within the 1 MiB body limit, over the event bound
    r = user.post("/api/paper", json={"title": "big", "content": huge})
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert "too large to record" in error["message"] and "524,288" in error["message"]
    assert user.get("/api/paper").json()["pagination"]["total"] == 0
    doc = user.post("/api/paper", json={"title": "small", "content": "c"})
    assert doc.status_code == 201, doc.text
    doc_id = doc.json()["id"]
    r = user.put(f"/api/paper/{doc_id}", json={"content": huge, "title": "bigger"})
    assert r.status_code == 413, r.text
    got = user.get(f"/api/paper/{doc_id}").json()
    assert (got["title"], got["content"], got["version"]) == ("small", "c", 1)
    assert len(all_events(admin)) == head + 1  # only the small document's creation


def test_lone_surrogates_in_a_body_are_refused_with_400(admin: httpx.Client) -> None:
    bodies = {
        "/api/sessions": b'{"bot_id": "b", "metadata": {"x": "\\ud800"}}',
        "/api/paper": b'{"title": "t", "content": "a\\udfffb"}',
        "/api/tasks": b'{"title": "\\ud83d"}',
    }
    head = len(all_events(admin))
    for path, body in bodies.items():
        r = admin.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["code"] == "BAD_REQUEST"
    assert len(all_events(admin)) == head


def _snapshot_versions(server: ServerProcess, aggregate_id: str) -> list[int]:
    url = server.env.get("GB_DATABASE_URL")
    if url:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT originator_version FROM gbserver_snapshots WHERE originator_id = %s"
                " ORDER BY originator_version",
                (uuid.UUID(aggregate_id),),
            ).fetchall()
        return [int(r[0]) for r in rows]
    with sqlite3.connect(server.data_dir / "events.sqlite") as conn:
        found = conn.execute(
            "SELECT originator_version FROM stored_snapshots WHERE originator_id = ?"
            " ORDER BY originator_version",
            (uuid.UUID(aggregate_id).hex,),
        ).fetchall()
    return [int(r[0]) for r in found]


COUNTER = """n = 0
TALK "ready"
WHILE TRUE
  HEAR said
  n = n + 1
  TALK "turn " + n + ": " + said
WEND
"""


def test_long_session_and_document_survive_restart_and_rebuild_from_snapshots(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    bot = f"bot-{uuid.uuid4().hex[:8]}"
    turns = SNAPSHOT_INTERVAL // 2
    with srv.client() as c:
        deploy(c, bot, "start", COUNTER)
        r = c.post("/api/sessions", json={"bot_id": bot, "metadata": {"t": TAG}})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert say(c, sid, "hi")["content"] == "ready"
        for i in range(1, turns + 1):
            assert say(c, sid, f"m{i}")["content"] == f"turn {i}: m{i}"
        doc = c.post("/api/paper", json={"title": "d", "content": "v1"})
        assert doc.status_code == 201, doc.text
        doc_id = doc.json()["id"]
        for v in range(2, SNAPSHOT_INTERVAL + 6):
            r = c.put(f"/api/paper/{doc_id}", json={"content": f"v{v}"})
            assert r.status_code == 200, r.text
        events = all_events(c)
    assert not any("Snapshot" in e["topic"] for e in events)
    session_snapshots = _snapshot_versions(srv, sid)
    assert session_snapshots and session_snapshots[0] == SNAPSHOT_INTERVAL
    assert _snapshot_versions(srv, doc_id) == [SNAPSHOT_INTERVAL]

    srv.stop()
    srv.start()
    with srv.client() as c:
        assert say(c, sid, "after")["content"] == f"turn {turns + 1}: after"
        session = c.get(f"/api/sessions/{sid}").json()
        assert session["metadata"] == {"t": TAG}
        assert session["message_count"] == 2 * (turns + 2)
        assert session["messages"][-1]["content"] == f"turn {turns + 1}: after"
        latest = c.get(f"/api/paper/{doc_id}").json()
        assert latest["content"] == f"v{SNAPSHOT_INTERVAL + 5}"
        assert latest["version"] == SNAPSHOT_INTERVAL + 5
        for v in (1, SNAPSHOT_INTERVAL - 1, SNAPSHOT_INTERVAL, SNAPSHOT_INTERVAL + 3):
            at = c.get(f"/api/paper/{doc_id}", params={"version": v})
            assert at.status_code == 200 and at.json()["content"] == f"v{v}", at.text
        history = c.get(f"/api/paper/{doc_id}/history", params={"limit": 200}).json()
        assert [h["version"] for h in history["data"]] == list(range(1, SNAPSHOT_INTERVAL + 6))
        before = (c.get(f"/api/sessions/{sid}").content, c.get(f"/api/paper/{doc_id}").content)
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    gbserver("rebuild", env=srv.env)
    srv.start()
    with srv.client() as c:
        after = (c.get(f"/api/sessions/{sid}").content, c.get(f"/api/paper/{doc_id}").content)
        assert after == before
        assert say(c, sid, "last")["content"] == f"turn {turns + 2}: last"
