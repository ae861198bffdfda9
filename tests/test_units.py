"""Unit tests of the layers below HTTP: aggregates, projections, config, cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from commands.ports import ConcurrencyConflict
from domain.common import Actor, Gone
from domain.paper import PaperDocument
from domain.tasks import Task
from infra.cache import TtlCache
from infra.config import ConfigError, Settings
from infra.readstore import open_read_store
from projections.core import Listing, Pagination, Where
from projections.tasks import TaskFilter, TasksProjection, list_tasks


def new_task(**overrides: object) -> Task:
    fields: dict[str, object] = {
        "owner": "o@x.io",
        "title": "t",
        "description": None,
        "due_date": None,
        "priority": "low",
        "status": "pending",
        "assignee": None,
    }
    fields.update(overrides)
    return Task(**fields)  # type: ignore[arg-type]


def test_task_change_emits_only_real_changes() -> None:
    task = new_task()
    task.collect_events()
    task.change("o@x.io", {"title": "t", "priority": "high", "status": "pending"})
    events = task.collect_events()
    assert [type(e).__name__ for e in events] == ["TaskUpdated"]
    assert getattr(events[0], "changes") == {"priority": "high"}  # noqa: B009 - typed as any event


def test_task_status_events() -> None:
    task = new_task()
    task.change("o@x.io", {"status": "completed"})
    task.change("o@x.io", {"status": "pending"})
    task.change("o@x.io", {"status": "cancelled"})
    names = [type(e).__name__ for e in task.collect_events()]
    assert names == ["TaskCreated", "TaskCompleted", "TaskReopened", "TaskCancelled"]


def test_deleted_aggregates_refuse_commands() -> None:
    task = new_task()
    task.delete("o@x.io")
    with pytest.raises(Gone):
        task.change("o@x.io", {"title": "x"})
    doc = PaperDocument(owner="o@x.io", title="t", content="", type="note")
    doc.delete("o@x.io")
    with pytest.raises(Gone):
        doc.revise("o@x.io", {"title": "x"})


def test_event_topics_are_explicit() -> None:
    task = new_task()
    task.change("o@x.io", {"title": "u", "status": "completed"})
    topics = [getattr(type(e), "TOPIC") for e in task.collect_events()]  # noqa: B009
    assert topics == [
        "gbserver.tasks.TaskCreated",
        "gbserver.tasks.TaskUpdated",
        "gbserver.tasks.TaskCompleted",
    ]


def test_projection_redelivery_changes_nothing(tmp_path: Path) -> None:
    store = open_read_store(Settings(data_dir=tmp_path))
    projection = TasksProjection(store)
    task = new_task(title="once")
    events = task.collect_events()
    projection.process_batch([(events[0], Tracking("gbserver", 1))])
    with pytest.raises((IntegrityError, ConcurrencyConflict)):
        projection.process_batch([(events[0], Tracking("gbserver", 1))])
    page = list_tasks(store, Actor("o@x.io"), TaskFilter(), 50, 0)
    assert [t.title for t in page.data] == ["once"]
    assert store.max_tracking_id("tasks") == 1
    projection.reset()
    assert list_tasks(store, Actor("o@x.io"), TaskFilter(), 50, 0).data == []
    assert store.max_tracking_id("tasks") is None
    store.datastore.close()


def test_settings_from_env(tmp_path: Path) -> None:
    s = Settings.from_env({"GB_DATA_DIR": str(tmp_path), "GB_MAX_BODY_BYTES": "2048"})
    assert s.data_dir == tmp_path and s.max_body_bytes == 2048 and not s.uses_postgres
    pg = Settings.from_env({"GB_DATABASE_URL": "postgresql://u:p%40ss@db.local:6543/gb"})
    assert pg.uses_postgres
    assert pg.postgres_env()["POSTGRES_PASSWORD"] == "p@ss"
    assert pg.postgres_env()["POSTGRES_PORT"] == "6543"
    for bad in (
        {"GB_DATABASE_URL": "mysql://x"},
        {"GB_MAX_BODY_BYTES": "lots"},
        {"GB_CONSISTENCY_TIMEOUT": "-1"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_cache_counts_hits_and_expires() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl_seconds=0.05, max_entries=2)
    assert cache.get("a") is None
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.hit_rate == 0.5
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None  # evicted, least recently used
    time.sleep(0.06)
    assert cache.get("c") is None  # expired
    assert cache.check()


class Item(msgspec.Struct):
    id: str
    kind: str
    rank: int
    note: str | None
    done: bool


def test_listing_pages_filters_and_converts(tmp_path: Path) -> None:
    store = open_read_store(Settings(data_dir=tmp_path))
    store.migrate(
        [
            "CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT NOT NULL, rank BIGINT NOT NULL,"
            " note TEXT, done BOOLEAN NOT NULL)"
        ]
    )
    rows = [(f"i{n}", "even" if n % 2 == 0 else "odd", n % 3, None, n % 4 == 0) for n in range(7)]
    with store.write(Tracking("items", 1)) as sql:
        sql.executemany("INSERT INTO items (id, kind, rank, note, done) VALUES (?,?,?,?,?)", rows)
    listing = Listing(Item, "id, kind, rank, note, done", "items", "rank DESC, id")

    assert Where().equal("kind", None).sql == ""
    with store.read() as sql:
        first = listing.fetch(sql, 3, 0)
        last = listing.fetch(sql, 3, 6)
        beyond = listing.fetch(sql, 3, 9)
        evens = listing.fetch(sql, 2, 1, Where().equal("kind", "even").equal("note", None))
        ranked = listing.fetch(sql, 10, 0, Where().add("(rank = ? OR id = ?)", 0, "i1"))
    # Ranks: i0 0, i1 1, i2 2, i3 0, i4 1, i5 2, i6 0; rank descending, then id.
    assert [i.id for i in first.data] == ["i2", "i5", "i1"]
    assert first.data[0] == Item("i2", "even", 2, None, False)  # SQLite's 0/1 made a bool
    assert first.pagination == Pagination(total=7, limit=3, offset=0, has_more=True)
    assert [i.id for i in last.data] == ["i6"]
    assert last.pagination == Pagination(total=7, limit=3, offset=6, has_more=False)
    assert beyond.data == [] and beyond.pagination.total == 7 and not beyond.pagination.has_more
    assert [(i.id, i.done) for i in evens.data] == [("i4", True), ("i0", True)]  # i2, i4, i0, i6
    assert evens.pagination == Pagination(total=4, limit=2, offset=1, has_more=True)
    assert [i.id for i in ranked.data] == ["i1", "i0", "i3", "i6"]
    assert ranked.pagination.total == 4

    def labelled(row: dict[str, Any]) -> str:
        return f"{row['id']}:{row['kind']}"

    with store.read() as sql:
        labels = Listing(labelled, "id, kind", "items", "id").fetch(sql, 2, 5)
    assert labels.data == ["i5:odd", "i6:even"]
    assert labels.pagination == Pagination(total=7, limit=2, offset=5, has_more=False)
    store.datastore.close()


def test_a_shadow_store_builds_apart_from_the_live_one_and_resets(tmp_path: Path) -> None:
    live = open_read_store(Settings(data_dir=tmp_path))
    shadow = live.shadow("tasks")
    try:
        projection = TasksProjection(shadow)
        task = new_task(title="in the shadow")
        projection.process_batch([(task.collect_events()[0], Tracking("gbserver", 3))])
        assert shadow.max_tracking_id("tasks") == 3
        assert [t.title for t in list_tasks(shadow, Actor("o@x.io"), TaskFilter(), 5, 0).data] == [
            "in the shadow"
        ]
        TasksProjection(live)
        assert list_tasks(live, Actor("o@x.io"), TaskFilter(), 5, 0).data == []  # apart
        projection.reset()
        assert shadow.max_tracking_id("tasks") is None
        assert list_tasks(shadow, Actor("o@x.io"), TaskFilter(), 5, 0).data == []
    finally:
        live.discard(shadow)
        live.datastore.close()
    assert not Path(shadow.where).exists()
