"""Unit tests of the layers below HTTP: aggregates, projections, config, cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from commands.ports import ConcurrencyConflict
from domain.common import Actor, Gone
from domain.paper import PaperDocument
from domain.tasks import Task
from infra.cache import TtlCache
from infra.config import ConfigError, Settings
from infra.readstore import open_read_store
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
    assert events[0].changes == {"priority": "high"}


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
    topics = [type(e).TOPIC for e in task.collect_events()]
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
