"""Projections as things an operator runs: state, online rebuild under load, dead letters.

Both profiles: the embedded one (SQLite, a worker per projection) and the scaled one
(PostgreSQL, the Kafka relay and projector).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from commands.tasks import CreateTask, TaskCommands
from domain.common import Actor
from infra.bootstrap import Services
from infra.config import Settings
from infra.locks import lock_for
from projections.operations import DeadLetterFailed, RebuildRunning
from projections.tasks import TasksProjection
from tests.load import write_tasks
from tests.profiles import Profile, drop_read_models
from tests.server import ADMIN_TOKEN, ServerProcess, gbserver
from tests.workers import eventually

OWNER = Actor("ops@example.com")


def all_tasks(c: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        r = c.get("/api/tasks", params={"limit": 100, "offset": len(found)})
        assert r.status_code == 200, r.text
        body = r.json()
        found += body["data"]
        if not body["pagination"]["has_more"]:
            return sorted(found, key=lambda t: t["id"])


def status(c: httpx.Client, name: str) -> dict[str, Any]:
    r = c.get(f"/api/admin/projections/{name}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class Load:
    """Steady writes and reads through the API; records anything that is not a whole answer."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.created: list[str] = []
        self.totals: list[int] = []
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _write(self) -> None:
        with self.srv.client() as c:
            i = 0
            while not self.stop.is_set():
                i += 1
                r = c.post("/api/tasks", json={"title": f"during {i}", "priority": "high"})
                if r.status_code != 201:
                    self.problems.append(f"create {r.status_code}: {r.text}")
                    continue
                task_id = r.json()["id"]
                self.created.append(task_id)
                seen = c.get(f"/api/tasks/{task_id}")  # read-your-writes, swap or not
                if seen.status_code != 200:
                    self.problems.append(f"read own write {seen.status_code}: {seen.text}")

    def _read(self) -> None:
        with self.srv.client() as c:
            while not self.stop.is_set():
                r = c.get("/api/tasks", params={"limit": 1})
                if r.status_code != 200:
                    self.problems.append(f"list {r.status_code}: {r.text}")
                    continue
                total = r.json()["pagination"]["total"]
                if self.totals and total < self.totals[-1]:
                    self.problems.append(f"total went back from {self.totals[-1]} to {total}")
                self.totals.append(total)


def test_online_rebuild_under_load_serves_whole_results_and_equals_an_offline_one(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    write_tasks(srv.env, 5000)  # 10,000 events: the rebuild takes a while
    with srv.client() as admin:
        eventually(lambda: status(admin, "tasks")["state"] == "running", 120, "caught up")
        before = status(admin, "tasks")
        assert before["lag_events"] == 0 and before["position"] == before["head"]
        with Load(srv) as load:
            eventually(lambda: len(load.created) >= 5, 30, "the load to start")
            r = admin.post("/api/admin/projections/tasks/rebuild")
            assert r.status_code == 202, r.text
            assert r.headers["location"] == "/api/admin/projections/tasks"
            again = admin.post("/api/admin/projections/tasks/rebuild")
            assert again.status_code in (202, 409)  # 409 while the first one runs
            eventually(
                lambda: (
                    status(admin, "tasks")["generation"] > before["generation"]
                    and status(admin, "tasks")["rebuild"] is None
                ),
                120,
                "the rebuild to swap",
            )
            written = len(load.created)
            eventually(lambda: len(load.created) >= written + 5, 30, "writes after the swap")
        assert load.problems == []
        assert len(load.totals) > 10
        eventually(lambda: status(admin, "tasks")["lag_events"] == 0, 60, "caught up again")
        online = all_tasks(admin)
        assert len(online) == 5000 + len(load.created)
        assert {t["id"] for t in online} >= set(load.created)

        # `gbserver rebuild` beside the running server is the same online rebuild.
        assert "tasks:" in gbserver("rebuild", "tasks", env=srv.env).stdout
        assert all_tasks(admin) == online
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    gbserver("rebuild", env=srv.env)
    srv.start()
    with srv.client() as admin:
        assert all_tasks(admin) == online


def test_unknown_projection_and_bad_policy_are_refused(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    srv = fresh_server()
    with srv.client() as admin:
        listed = admin.get("/api/admin/projections").json()["data"]
        assert {p["name"] for p in listed} >= {"tasks", "paper", "sessions", "tokens"}
        assert all(p["state"] in ("running", "catching_up") for p in listed)
        assert admin.get("/api/admin/projections/nope").status_code == 404
        assert admin.post("/api/admin/projections/nope/rebuild").status_code == 404
        bad = admin.put("/api/admin/projections/tasks/policy", json={"policy": "ignore"})
        assert bad.status_code == 400
        with srv.client(None) as anonymous:
            assert anonymous.get("/api/admin/projections").status_code == 401


@pytest.fixture
def services(profile: Profile, tmp_path: Path) -> Iterator[Services]:
    env = {**profile.env(), "GB_DATA_DIR": str(tmp_path), "GB_ADMIN_TOKEN": ADMIN_TOKEN}
    opened = Services.open(Settings.from_env(env))
    opened.start_workers()
    yield opened
    opened.close()


def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    """TasksProjection fails on a task titled 'poison' (as a bug in a handler would)."""
    topic = "gbserver.tasks.TaskCreated"
    original = TasksProjection._handlers[topic]

    def failing(self: TasksProjection, sql: Any, e: Any) -> None:
        if e.title == "poison":
            raise ValueError("cannot project this one")
        original(self, sql, e)

    monkeypatch.setitem(TasksProjection._handlers, topic, failing)


def task_ids(services: Services) -> set[str]:
    with services.read.read() as sql:
        sql.execute("SELECT id FROM tasks")
        return {r["id"] for r in sql.fetchall()}


def state_in_metrics(services: Services, name: str) -> str:
    text, _ = services.metrics.render()
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "gbserver_projection_state":
            for sample in family.samples:
                if sample.labels["projection"] == name and sample.value == 1:
                    return sample.labels["state"]
    raise AssertionError("no gbserver_projection_state sample")


def test_a_poison_event_stalls_then_is_skipped_to_a_dead_letter_and_retried_after_a_fix(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison(monkeypatch)
    ops = services.operations()
    tasks = TaskCommands(services.events)
    first, _ = tasks.create(OWNER, CreateTask(title="before"))
    bad, saved = tasks.create(OWNER, CreateTask(title="poison"))
    after, _ = tasks.create(OWNER, CreateTask(title="after"))
    bad_event = saved.notifications[0][0]

    eventually(lambda: ops.status("tasks").state == "stalled", 30, "tasks to stall")
    stalled = ops.status("tasks")
    assert stalled.last_error is not None and stalled.last_error.event_id == bad_event
    assert "cannot project this one" in stalled.last_error.error
    assert stalled.lag_events >= 1 and stalled.position < bad_event
    if not services.settings.uses_kafka:
        # Stop: the projection goes no further. (On the Kafka feed one projector applies
        # every projection: a stall there holds all of them, whatever the partition.)
        assert first in task_ids(services) and after not in task_ids(services)
    assert services.monitoring().health()["projections"] == "error"
    assert state_in_metrics(services, "tasks") == "stalled"
    with TestClient(services_app(services)) as http:
        listed = http.get("/api/admin/projections", headers=admin_headers()).json()["data"]
        assert {p["name"]: p["state"] for p in listed}["tasks"] == "stalled"
        health = http.get("/api/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"

        r = http.put(
            "/api/admin/projections/tasks/policy", json={"policy": "skip"}, headers=admin_headers()
        )
        assert r.status_code == 200 and r.json()["policy"] == "skip"
        eventually(
            lambda: {first, after} <= task_ids(services), 30, "tasks to go on past the poison"
        )
        eventually(lambda: ops.status("tasks").state == "running", 30, "tasks to run again")
        assert services.monitoring().health()["projections"] == "ok"
        assert state_in_metrics(services, "tasks") == "running"
        letters = http.get(
            "/api/admin/projections/tasks/dead-letters", headers=admin_headers()
        ).json()
        assert letters["pagination"]["total"] == 1
        letter = letters["data"][0]
        assert letter["event_id"] == bad_event and letter["aggregate_id"] == bad
        assert letter["topic"] == "gbserver.tasks.TaskCreated"
        assert "cannot project this one" in letter["error"]
        assert bad not in task_ids(services)

        # Retried before the fix: refused with the error, kept, counted.
        retry = f"/api/admin/projections/tasks/dead-letters/{letter['id']}/retry"
        failed = http.post(retry, headers=admin_headers())
        assert failed.status_code == 409 and "cannot project this one" in failed.text
        with pytest.raises(DeadLetterFailed):
            ops.retry("tasks", letter["id"])
        assert ops.dead_letters("tasks", 10, 0).data[0].retries == 2

        monkeypatch.undo()  # the fix
        done = http.post(retry, headers=admin_headers())
        assert done.status_code == 200, done.text
        assert done.json()["retried"]["event_id"] == bad_event
        assert bad in task_ids(services)
        assert ops.dead_letters("tasks", 10, 0).pagination.total == 0
        missing = http.post(
            f"/api/admin/projections/tasks/dead-letters/{uuid.uuid4()}/retry",
            headers=admin_headers(),
        )
        assert missing.status_code == 404


def test_a_rebuild_after_the_fix_clears_a_stall(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison(monkeypatch)
    ops = services.operations()
    tasks = TaskCommands(services.events)
    bad, _ = tasks.create(OWNER, CreateTask(title="poison"))
    eventually(lambda: ops.status("tasks").state == "stalled", 30, "tasks to stall")
    monkeypatch.undo()
    ops.rebuild("tasks", lambda *_: None)
    eventually(lambda: ops.status("tasks").state == "running", 30, "tasks to run again")
    assert bad in task_ids(services)
    later, _ = tasks.create(OWNER, CreateTask(title="later"))
    eventually(lambda: later in task_ids(services), 30, "the worker to go on after the swap")


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def services_app(services: Services) -> Any:
    from api.app import create_app

    return create_app(services.wiring())


def test_one_rebuild_of_a_projection_at_a_time(services: Services) -> None:
    held = lock_for(services.settings, "rebuild tasks")  # as another process's rebuild would
    assert held.acquire()
    try:
        with pytest.raises(RebuildRunning):
            services.operations().rebuild("tasks", lambda *_: None)
        with TestClient(services_app(services)) as http:
            r = http.post("/api/admin/projections/tasks/rebuild", headers=admin_headers())
            assert r.status_code == 409 and "already running" in r.json()["error"]["message"]
            other = http.post("/api/admin/projections/paper/rebuild", headers=admin_headers())
            assert other.status_code == 202
    finally:
        held.release()
    services.operations().rebuild("tasks", lambda *_: None)


def test_a_stall_recorded_by_another_process_degrades_this_ones_health(
    profile: Profile, tmp_path: Path
) -> None:
    env = {**profile.env(), "GB_DATA_DIR": str(tmp_path)}
    api = Services.open(Settings.from_env(env))  # an API with --no-workers: no worker of its own
    try:
        assert api.monitoring().health()["projections"] == "ok"
        with api.read.write(None) as sql:  # as a projector elsewhere records its stall
            sql.execute(
                "UPDATE gbserver_projections SET stalled_on = 7, stalled_topic = 't', error = 'e'"
                " WHERE name = 'tasks'"
            )
        assert api.monitoring().health()["projections"] == "error"
        assert api.operations().status("tasks").state == "stalled"
    finally:
        api.close()
