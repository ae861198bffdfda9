"""Upcasting (issue 8): events stored in an older shape are read as today's.

PaperCreated version 1 had no `author`; version 2 (domain.paper) has one, and its upcaster
fills it from `owner` for the events stored before. Version-1 events are written here
straight into the event store, byte for byte as the code of that time stored them (the
library stores no "class_version" for version 1; some writers may have stored 1), with
revisions of that era after them, and then read back everywhere: the aggregate, the
history, the projection (embedded and, on the scaled profile, through the Kafka feed) and a
rebuild of the read model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from eventsourcing.persistence import AggregateRecorder, StoredEvent

from commands.paper import PaperCommands, UpdateDocument
from domain.common import Actor, IfMatch, rfc3339
from domain.paper import EDITABLE, PaperDocument
from infra.config import Settings
from infra.eventstore import SNAPSHOT_INTERVAL, EventStoreAdapter, GBApplication
from projections.paper import document_history
from tests.profiles import Profile
from tests.server import ServerProcess, gbserver
from tests.workers import eventually

CREATED = "gbserver.paper.PaperCreated"
REVISED = "gbserver.paper.PaperRevised"
START = datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=UTC)


def _at(moment: datetime) -> dict[str, str]:
    return {"_type_": "datetime_iso", "_data_": moment.isoformat()}


def _json(state: dict[str, Any]) -> bytes:
    return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()


def v1_created(
    owner: str, title: str, content: str, moment: datetime, *, stated: bool = False
) -> bytes:
    """A PaperCreated as version 1 stored it: no author, no class_version (or `stated`: 1)."""
    state: dict[str, Any] = {
        "timestamp": _at(moment),
        "originator_topic": "gbserver.paper.PaperDocument",
        "owner": owner,
        "title": title,
        "content": content,
        "type": "note",
    }
    if stated:
        state["class_version"] = 1
    return _json(state)


def revised(author: str, changes: dict[str, str], moment: datetime) -> bytes:
    return _json({"timestamp": _at(moment), "author": author, "changes": changes})


def write_v1_document(
    recorder: AggregateRecorder,
    owner: str,
    editor: str,
    *,
    stated: bool = False,
    revisions: int = 2,
) -> UUID:
    """A document of the version-1 era: created by `owner`, who revises it, then `editor`
    (an admin) revises it, the rest by the owner again; `revisions` revisions in all."""
    doc_id = uuid.uuid4()
    events = [
        StoredEvent(doc_id, 1, CREATED, v1_created(owner, "Plan", "one", START, stated=stated))
    ]
    for i in range(revisions):
        author = editor if i == 1 else owner
        changes = {"title": "Plan B"} if i == 1 else {"content": f"rev {i}"}
        moment = START + timedelta(minutes=i + 1)
        events.append(StoredEvent(doc_id, i + 2, REVISED, revised(author, changes, moment)))
    recorder.insert_events(events)
    return doc_id


@pytest.fixture
def store(tmp_path: Path) -> EventStoreAdapter:
    return EventStoreAdapter(GBApplication(Settings.from_env({"GB_DATA_DIR": str(tmp_path)})))


# --- the event store, in process --------------------------------------------------------


def test_todays_created_event_is_stored_as_version_2_with_its_author(
    store: EventStoreAdapter,
) -> None:
    doc = PaperDocument(owner="o@example.com", title="t", content="", type="note")
    store.save(doc)
    (stored,) = store.notifications(0, 10)
    state = store.decode_state(stored.state)
    assert (state["class_version"], state["author"]) == (2, "o@example.com")
    given = PaperDocument(owner="o@example.com", title="t", content="", type="n", author="a@x.io")
    assert given.last_author == "a@x.io"
    assert [e.author for e in given.collect_events()] == ["a@x.io"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("stated", [False, True], ids=["no-class-version", "class-version-1"])
def test_a_version_1_created_event_is_read_with_the_owner_as_author(
    store: EventStoreAdapter, stated: bool
) -> None:
    owner, editor = "owner@example.com", "boss@example.com"
    doc_id = write_v1_document(store.app.recorder, owner, editor, stated=stated)

    # Through the mapper, as every reader of the log gets it (projections, rebuilds, Kafka).
    decoded = [store.decode(n) for n in store.notifications(0, 10)]
    assert type(decoded[0]) is PaperDocument.PaperCreated
    assert (decoded[0].owner, decoded[0].author) == (owner, owner)
    # The history, straight from the stream.
    history = document_history(store, doc_id, Actor(owner), 50, 0)
    assert history is not None
    assert [(r.version, r.event, r.author) for r in history.data] == [
        (1, "created", owner),
        (2, "revised", owner),
        (3, "revised", editor),
    ]
    assert history.data[0].changed == list(EDITABLE)
    assert history.data[0].timestamp == rfc3339(START)
    # The aggregate, at its first version and now.
    first = store.get(doc_id, version=1)
    assert (first.owner, first.last_author, first.title, first.created_on) == (
        owner,
        owner,
        "Plan",
        START,
    )
    now = store.get(doc_id)
    assert (now.version, now.title, now.content, now.last_author) == (3, "Plan B", "rev 0", editor)


def test_an_old_document_takes_commands_and_snapshots_as_todays(
    store: EventStoreAdapter, tmp_path: Path
) -> None:
    owner, editor = "owner@example.com", "boss@example.com"
    doc_id = write_v1_document(store.app.recorder, owner, editor, revisions=SNAPSHOT_INTERVAL - 3)
    commands = PaperCommands(store)
    actor = Actor(owner)
    version = SNAPSHOT_INTERVAL - 2
    commands.update(actor, doc_id, UpdateDocument(content="today"), IfMatch.version(version))
    # The next save makes version SNAPSHOT_INTERVAL, which is snapshotted.
    commands.update(actor, doc_id, UpdateDocument(title="Now"), IfMatch.version(version + 1))
    snapshots = store.app.snapshots
    assert snapshots is not None
    assert [s.originator_version for s in snapshots.get(doc_id)] == [SNAPSHOT_INTERVAL]

    # Loaded by a new application: from the snapshot, the same as replaying every event.
    reopened = EventStoreAdapter(GBApplication(Settings.from_env({"GB_DATA_DIR": str(tmp_path)})))
    loaded = reopened.get(doc_id)
    replayed: Any = None
    for e in reopened.history(doc_id):
        replayed = e.mutate(replayed)
    assert vars(loaded) == vars(replayed)
    assert (loaded.version, loaded.owner, loaded.title, loaded.content) == (
        SNAPSHOT_INTERVAL,
        owner,
        "Now",
        "today",
    )
    assert loaded.created_on == START
    # And the old document goes on: deleted by its owner, like any other.
    commands.delete(actor, doc_id, IfMatch.version(SNAPSHOT_INTERVAL))
    assert reopened.get(doc_id).deleted
    history = document_history(reopened, doc_id, actor, 1, 0)
    assert history is not None and history.data[0].author == owner


# --- a server on a log of the version-1 era -----------------------------------------------


def _observe(c: httpx.Client, ids: list[UUID]) -> list[Any]:
    seen: list[Any] = [c.get("/api/paper").json()["data"]]
    for doc_id in ids:
        seen.append(c.get(f"/api/paper/{doc_id}").json())
        seen.append(c.get(f"/api/paper/{doc_id}/history").json())
        seen.append(c.get(f"/api/paper/{doc_id}", params={"version": 1}).json())
    return seen


def test_version_1_events_replay_into_todays_read_model(
    profile: Profile, tmp_path: Path, fresh_server: Callable[..., ServerProcess]
) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}@example.com"
    editor = "boss@example.com"
    env = profile.env()
    data_dir = tmp_path / "data"
    app = GBApplication(Settings.from_env({**env, "GB_DATA_DIR": str(data_dir)}))
    try:
        old = write_v1_document(app.recorder, owner, editor)
        stated = write_v1_document(app.recorder, owner, editor, stated=True, revisions=0)
    finally:
        app.close()

    srv = fresh_server(data_dir, **env)
    with srv.client() as admin:
        r = admin.post("/api/admin/tokens", json={"user": owner})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    with srv.client(token) as c:
        eventually(
            lambda: (
                c.get(f"/api/paper/{old}").json().get("version") == 3
                and c.get(f"/api/paper/{stated}").status_code == 200
            ),
            60,
            "the version-1 documents to be projected",
        )
        view = c.get(f"/api/paper/{old}").json()
        assert {k: view[k] for k in ("owner", "title", "content", "version", "updated_by")} == {
            "owner": owner,
            "title": "Plan B",
            "content": "rev 0",
            "version": 3,
            "updated_by": editor,
        }
        assert view["created_at"] == rfc3339(START)
        assert view["updated_at"] == rfc3339(START + timedelta(minutes=2))
        first = c.get(f"/api/paper/{stated}").json()
        assert (first["owner"], first["updated_by"], first["version"]) == (owner, owner, 1)
        listed = c.get("/api/paper").json()
        assert sorted(d["id"] for d in listed["data"]) == sorted([str(old), str(stated)])

        history = c.get(f"/api/paper/{old}/history").json()["data"]
        assert [(h["version"], h["event"], h["author"]) for h in history] == [
            (1, "created", owner),
            (2, "revised", owner),
            (3, "revised", editor),
        ]
        assert c.get(f"/api/paper/{stated}/history").json()["data"][0]["author"] == owner
        at_first = c.get(f"/api/paper/{old}", params={"version": 1}).json()
        assert (at_first["title"], at_first["content"], at_first["updated_by"]) == (
            "Plan",
            "one",
            owner,
        )

        # A command on the old document loads its aggregate from the version-1 events.
        r = c.put(f"/api/paper/{old}", json={"content": "today"}, headers={"If-Match": '"3"'})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["content"]) == (4, "today")
        authors = [h["author"] for h in c.get(f"/api/paper/{old}/history").json()["data"]]
        assert authors == [owner, owner, editor, owner]
        before = _observe(c, [old, stated])

    # The read model rebuilt from the log is the same.
    srv.stop()
    assert "paper:" in gbserver("rebuild", "paper", env=srv.env).stdout
    srv.start()
    with srv.client(token) as c:
        assert _observe(c, [old, stated]) == before
