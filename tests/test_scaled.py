"""The scaled profile under failure: Kafka outages, projector crashes, consumer-group handover.

These need the Kafka feed, so they run on the scaled profile only (CI selects it).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.load import write_tasks
from tests.profiles import Profile, drop_read_models
from tests.server import ROOT, ServerProcess, gbserver
from tests.test_persistence import observe
from tests.workers import Worker, eventually, query, table_snapshot


@pytest.fixture
def scaled(profile: Profile) -> Profile:
    if not profile.scaled:
        pytest.skip("Kafka feed tests run on the scaled profile")
    return profile


def services(*args: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "services"), *args],
        check=True,
        timeout=180,
        stdout=subprocess.DEVNULL,
    )


def tasks_count(url: str) -> int:
    return int(query(url, "SELECT COUNT(*) FROM tasks")[0][0])


def renamed_count(url: str) -> int:
    return int(query(url, "SELECT COUNT(*) FROM tasks WHERE title LIKE %s", ("% renamed",))[0][0])


def topic_size(env: dict[str, str]) -> int:
    consumer = KafkaConsumer(bootstrap_servers=env["GB_KAFKA_BOOTSTRAP"])
    try:
        parts = [
            TopicPartition(env["GB_KAFKA_TOPIC"], p)
            for p in consumer.partitions_for_topic(env["GB_KAFKA_TOPIC"]) or ()
        ]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def test_writes_succeed_while_kafka_is_down_and_read_models_converge(
    scaled: Profile, fresh_server: Callable[..., ServerProcess]
) -> None:
    srv = fresh_server()
    with srv.client() as c:
        assert c.post("/api/tasks", json={"title": "before"}).status_code == 201
        services("down", "kafka")
        try:
            statuses = [
                c.post("/api/tasks", json={"title": f"outage {i}"}).status_code for i in range(500)
            ]
            assert c.get("/api/health").json()["components"]["kafka"] == "error"
        finally:
            services("up", "kafka")
        assert set(statuses) <= {201, 202}, sorted(set(statuses))

        def caught_up() -> bool:
            return bool(c.get("/api/tasks").json()["pagination"]["total"] == 501)

        eventually(caught_up, 120, "the read model to catch up after Kafka came back")
        ids = {
            "tasks": [t["id"] for t in c.get("/api/tasks", params={"limit": 200}).json()["data"]],
            "paper": [],
        }
        before = observe(c, ids)
    srv.stop()
    drop_read_models(srv.env, srv.data_dir)
    gbserver("rebuild", env=srv.env)
    srv.start()
    with srv.client() as c:
        assert observe(c, ids) == before


def test_projector_killed_mid_stream_loses_and_repeats_nothing(
    scaled: Profile, tmp_path: Path
) -> None:
    env = scaled.env()
    url = env["GB_DATABASE_URL"]
    write_tasks(env, 5000)  # 10,000 events: each task is created, then renamed
    relay = Worker(["relay"], env, tmp_path / "relay.log")
    first = Worker(["project", "--group", "crash"], env, tmp_path / "first.log")
    try:
        eventually(lambda: tasks_count(url) > 0, 60, "the first projector to start applying")
        first.kill()
        killed_at = tasks_count(url)
        relay.kill()  # the relay too, mid-stream or after: it must neither skip nor flood
        relay = Worker(["relay"], env, tmp_path / "relay2.log")
        second = Worker(["project", "--group", "crash"], env, tmp_path / "second.log")
        try:
            eventually(lambda: renamed_count(url) == 5000, 120, "all 10,000 events applied")
            assert killed_at < 5000, "the projector finished before it could be killed"
            assert tasks_count(url) == 5000
            # An event applied twice would break the tasks table's primary key.
            assert "duplicate key" not in second.log()
        finally:
            second.stop()
    finally:
        relay.stop()
    assert 10_000 <= topic_size(env) <= 10_000 + 500  # at most one batch sent twice
    projected = table_snapshot(url)
    gbserver("rebuild", "tasks", env=env)
    assert table_snapshot(url) == projected


def test_two_projectors_share_partitions_and_hand_them_over(
    scaled: Profile, tmp_path: Path
) -> None:
    env = scaled.env()
    url = env["GB_DATABASE_URL"]
    relay = Worker(["relay"], env, tmp_path / "relay.log")
    one = Worker(["project", "--group", "pair"], env, tmp_path / "one.log")
    two = Worker(["project", "--group", "pair"], env, tmp_path / "two.log")
    try:
        write_tasks(env, 600, title="first")
        eventually(lambda: renamed_count(url) == 600, 120, "the pair to apply the first batch")

        def split() -> bool:
            a, b = one.assignments(), two.assignments()
            return bool(a and b and a[-1] and b[-1] and sorted(a[-1] + b[-1]) == list(range(6)))

        eventually(split, 60, "both workers to hold partitions")
        one.stop()
        eventually(
            lambda: bool(two.assignments()) and two.assignments()[-1] == list(range(6)),
            60,
            "the survivor to take every partition",
        )
        write_tasks(env, 600, title="second")
        eventually(lambda: renamed_count(url) == 1200, 120, "the survivor to apply the rest")
        assert tasks_count(url) == 1200
    finally:
        one.stop()
        two.stop()
        relay.stop()


def test_api_without_workers_still_reads_its_writes(scaled: Profile, tmp_path: Path) -> None:
    """The docker-compose layout: API, relay and projector in three processes."""
    env = scaled.env()
    srv = ServerProcess(tmp_path / "data", env, args=("--no-workers",)).start()
    relay = Worker(["relay"], env, tmp_path / "relay.log")
    projector = Worker(["project"], env, tmp_path / "projector.log")
    try:
        with srv.client() as c:
            eventually(
                lambda: c.post("/api/tasks", json={"title": "warm-up"}).status_code == 201,
                60,
                "the relay and projector to join",
            )
            for i in range(20):
                r = c.post("/api/tasks", json={"title": f"split {i}"})
                assert r.status_code == 201, r.text  # not 202: the projector had it in time
            listed = c.get("/api/tasks", params={"limit": 200}).json()
            assert listed["pagination"]["total"] >= 21
    finally:
        projector.stop()
        relay.stop()
        srv.stop()
