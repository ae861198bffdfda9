"""The Kafka feed's integrity: no event stops it, one relay publishes, every process knows
whether it moves, a replay finds what another process projected, a dead projector's
partitions move on.

Each test starts its own processes on a database and topic of its own (scaled profile);
outages are simulated without touching the shared broker: a relay pointed at a closed port,
or paused with SIGSTOP.
"""

from __future__ import annotations

import os
import random
import re
import signal
import string
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest
from eventsourcing.persistence import Notification
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from commands.ports import MAX_EVENT_BYTES
from infra.config import Settings
from infra.kafka import (
    BATCH_MAX_BYTES,
    MESSAGE_MAX_BYTES,
    MONITOR_TTL,
    STALE_SECONDS,
    STALL_SECONDS,
    FeedMonitor,
    Message,
    RelayReport,
    decode_message,
    encode_message,
    ensure_topic,
)
from infra.locks import LockLost, PostgresLock
from tests.profiles import Profile
from tests.server import ServerProcess, free_port
from tests.workers import Worker, eventually


@pytest.fixture
def scaled(profile: Profile) -> Profile:
    if not profile.scaled:
        pytest.skip("Kafka feed tests run on the scaled profile")
    return profile


@pytest.fixture
def processes() -> Iterator[list[Worker | ServerProcess]]:
    """Worker and server processes of one test, all stopped at its end (resumed first if
    a test paused one)."""
    started: list[Worker | ServerProcess] = []
    yield started
    for p in reversed(started):
        proc = p.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        p.stop()


def kafka_health(c: httpx.Client) -> str:
    return str(c.get("/api/health").json()["components"]["kafka"])


def random_text(size: int) -> str:
    """Text no compression shrinks much: the event is as large on the wire as in the store."""
    rng = random.Random(7)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=size))


def api_without_workers(
    env: dict[str, str], tmp_path: Path, processes: list[Worker | ServerProcess]
) -> ServerProcess:
    """An API process that runs no relay and no projector: the feed is other processes'."""
    srv = ServerProcess(tmp_path / "data", env, args=("--no-workers",)).start()
    processes.append(srv)
    return srv


def until_read_back(c: httpx.Client, title: str, seconds: float, what: str) -> None:
    """Creates tasks until one answers 201: its write went through the feed to the reads."""
    eventually(
        lambda: c.post("/api/tasks", json={"title": title}).status_code == 201, seconds, what
    )


# --- repro 1: one large document stopped the whole feed -------------------------------------


def test_wire_format_carries_the_largest_event_without_inflation() -> None:
    state = os.urandom(MAX_EVENT_BYTES)
    n = Notification(
        id=7, originator_id=uuid.uuid4(), originator_version=1, topic="t:Created", state=state
    )
    wire = encode_message(n)
    # msgpack carries the state as raw bytes (JSON base64'd it: a third larger).
    assert len(wire) < MAX_EVENT_BYTES + 1024 < MESSAGE_MAX_BYTES < BATCH_MAX_BYTES
    assert decode_message(wire) == Message(7, str(n.originator_id), 1, "t:Created", state)
    # Messages relays wrote before (JSON) still decode.
    old = msgspec.json.encode(Message(7, str(n.originator_id), 1, "t:Created", b"\x00{"))
    assert decode_message(old).state == b"\x00{"


def test_a_topic_made_elsewhere_is_raised_to_the_message_size(scaled: Profile) -> None:
    bootstrap = scaled.env()["GB_KAFKA_BOOTSTRAP"]
    topic = f"gbtest.small.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # As auto-creation or an older relay made it: the broker's default message size.
        admin.create_topics({topic: {"num_partitions": 6, "replication_factor": 1, "configs": {}}})
        ensure_topic(bootstrap, topic, 6)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])
        described = admin.describe_configs([resource], config_filter="all")
        value = int(described["topic"][topic]["max.message.bytes"]["value"])
        assert value >= BATCH_MAX_BYTES
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_a_document_near_the_event_bound_travels_the_feed(
    profile: Profile, fresh_server: Callable[..., ServerProcess]
) -> None:
    """Repro: after one ~800 KB document, every write answered 202 and no read changed."""
    srv = fresh_server()
    with srv.client() as c:
        huge = c.post("/api/paper", json={"title": "huge", "content": "x" * 800_000})
        # Refused (above the event bound) or carried: never accepted and stuck.
        assert huge.status_code in (201, 413), huge.text
        content = random_text(500_000)  # just under the bound once encoded
        r = c.post("/api/paper", json={"title": "big", "content": content})
        assert r.status_code == 201, r.text[:300]
        got = c.get(r.headers["Location"])
        assert got.status_code == 200 and got.json()["content"] == content
        after = c.post("/api/tasks", json={"title": "after the big document"})
        assert after.status_code == 201, after.text
        if profile.scaled:
            assert kafka_health(c) == "ok"


# --- repro 15: a replay answered 404 for a resource another process projected ---------------


def test_a_replayed_key_finds_the_resource_another_process_projects(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = {**scaled.env(), "GB_CONSISTENCY_TIMEOUT": "10"}
    projector = Worker(["project"], env, tmp_path / "projector.log")
    processes.append(projector)
    eventually(lambda: bool(projector.assignments()), 60, "the projector to join")
    srv = api_without_workers(env, tmp_path, processes)
    body = {"title": "replayed"}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    with srv.client() as c:
        first = c.post("/api/tasks", json=body, headers=headers)
        assert first.status_code == 202, first.text  # no relay: not in the read model yet
        replies: list[httpx.Response] = []

        def replay() -> None:
            with srv.client() as again:
                replies.append(again.post("/api/tasks", json=body, headers=headers))

        waiting = threading.Thread(target=replay)
        waiting.start()
        # The task reaches the read model through processes other than the server's.
        processes.append(Worker(["relay"], env, tmp_path / "relay.log"))
        waiting.join(timeout=60)
    assert replies, "the replay did not answer"
    r = replies[0]
    assert r.status_code == 201, r.text
    assert r.headers["Idempotent-Replayed"] == "true"
    assert r.headers["Location"] == first.headers["Location"]
    assert r.json()["title"] == "replayed"


def test_a_replayed_key_of_a_deleted_resource_answers_404_without_waiting(
    scaled: Profile, fresh_server: Callable[..., ServerProcess]
) -> None:
    """The feed tells when the read model holds the whole log: no wait for a resource that
    is gone (GB_CONSISTENCY_TIMEOUT is far above the client's timeout)."""
    srv = fresh_server(GB_CONSISTENCY_TIMEOUT="120")
    body = {"title": "to delete"}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    with srv.client() as c:
        first = c.post("/api/tasks", json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert c.delete(first.headers["Location"]).status_code == 204
        c.timeout = httpx.Timeout(10.0)
        again = c.post("/api/tasks", json=body, headers=headers)
        assert again.status_code == 404, again.text


# --- repro 16: two in-process relays fought over one position -------------------------------


def test_two_api_processes_publish_through_one_relay_and_fail_over(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = {**scaled.env(), "GB_LOG_LEVEL": "info"}
    a = ServerProcess(tmp_path / "a", env).start()
    processes.append(a)
    b = ServerProcess(tmp_path / "b", env).start()
    processes.append(b)
    with a.client() as ca, b.client() as cb:
        statuses = [
            (ca if i % 2 else cb).post("/api/tasks", json={"title": f"t{i}"}).status_code
            for i in range(60)
        ]
        assert statuses == [201] * 60
        assert kafka_health(ca) == kafka_health(cb) == "ok"
        active = [s for s in (a, b) if "relay active" in s.log_path.read_text()]
        assert active == [a], "exactly one relay publishes (the first one)"
        a.kill()  # its lock goes with its session: b's relay takes over

        def b_publishes() -> bool:
            return all(
                cb.post("/api/tasks", json={"title": "after"}).status_code == 201 for _ in range(5)
            )

        eventually(b_publishes, 60, "the standby relay to take over", pause=0.5)
        assert "relay active" in b.log_path.read_text()
        assert kafka_health(cb) == "ok"


def test_a_paused_relay_hands_over_and_stands_by_when_resumed(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = scaled.env()
    projector = Worker(["project"], env, tmp_path / "projector.log")
    processes.append(projector)
    first = Worker(["relay"], env, tmp_path / "first.log")
    processes.append(first)
    eventually(lambda: "relay active" in first.log(), 60, "the first relay to publish")
    second = Worker(["relay"], env, tmp_path / "second.log")
    processes.append(second)
    eventually(lambda: bool(projector.assignments()), 60, "the projector to join")
    srv = api_without_workers(env, tmp_path, processes)
    with srv.client() as c:
        until_read_back(c, "warm-up", 60, "the feed to carry writes")
        os.kill(first.proc.pid, signal.SIGSTOP)
        eventually(lambda: "relay active" in second.log(), 60, "the standby to take over")
        until_read_back(c, "via second", 30, "writes to go through the second relay")
        os.kill(first.proc.pid, signal.SIGCONT)
        eventually(lambda: "lost its lock" in first.log(), 30, "the first relay to stand by")
        statuses = [
            c.post("/api/tasks", json={"title": f"after {i}"}).status_code for i in range(20)
        ]
        assert statuses == [201] * 20
        assert kafka_health(c) == "ok"
    assert "relay active" not in first.log().split("lost its lock", 1)[1]


def test_a_relay_lock_is_held_by_one_session_and_lost_with_it(scaled: Profile) -> None:
    env = scaled.env()
    settings = Settings.from_env(env)
    one, two = PostgresLock(settings, "relay t"), PostgresLock(settings, "relay t")
    try:
        assert one.acquire()
        assert not two.acquire()
        one.check()
        with psycopg.connect(env["GB_DATABASE_URL"], autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        with pytest.raises(LockLost):
            one.check()
        assert two.acquire()
        assert not one.acquire()
        two.release()
        assert one.acquire()
    finally:
        one.release()
        two.release()


# --- repro 17: an API without workers could not tell that the feed was down -----------------


def test_an_api_without_workers_answers_at_once_while_the_feed_is_down(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = {**scaled.env(), "GB_CONSISTENCY_TIMEOUT": "120"}
    processes.append(Worker(["project"], env, tmp_path / "projector.log"))
    # The relay cannot reach Kafka: nothing listens on this port.
    cut_off = Worker(
        ["relay"], {**env, "GB_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, tmp_path / "r1.log"
    )
    processes.append(cut_off)
    srv = api_without_workers(env, tmp_path, processes)
    with srv.client() as c:
        eventually(lambda: kafka_health(c) == "error", 60, "the API to see the relay's error")
        c.timeout = httpx.Timeout(10.0)  # far below the consistency timeout
        statuses = [
            c.post("/api/tasks", json={"title": f"outage {i}"}).status_code for i in range(10)
        ]
        assert statuses == [202] * 10
        cut_off.stop()  # releases the lock to a relay that reaches Kafka
        processes.append(Worker(["relay"], env, tmp_path / "r2.log"))
        until_read_back(c, "back", 60, "writes to be read back once the feed moves")
        assert kafka_health(c) == "ok"
        eventually(
            lambda: c.get("/api/tasks").json()["pagination"]["total"] >= 11,
            30,
            "the outage's writes to reach the read model",
        )


def test_a_silent_relay_marks_the_feed_down_for_every_process(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = {**scaled.env(), "GB_CONSISTENCY_TIMEOUT": "120"}
    processes.append(Worker(["project"], env, tmp_path / "projector.log"))
    relay = Worker(["relay"], env, tmp_path / "relay.log")
    processes.append(relay)
    srv = api_without_workers(env, tmp_path, processes)
    with srv.client() as c:
        until_read_back(c, "warm-up", 60, "the feed to carry writes")
        os.kill(relay.proc.pid, signal.SIGSTOP)  # no error reported: its heartbeat goes stale
        eventually(lambda: kafka_health(c) == "error", 30, "the API to see the relay is silent")
        c.timeout = httpx.Timeout(10.0)
        assert c.post("/api/tasks", json={"title": "paused"}).status_code == 202
        os.kill(relay.proc.pid, signal.SIGCONT)
        eventually(lambda: kafka_health(c) == "ok", 30, "the feed to be back")
        c.timeout = httpx.Timeout(30.0)
        until_read_back(c, "resumed", 30, "writes to be read back again")


class _Reports:
    """Stands in for FeedState: the reports a monitor reads, one after the other."""

    def __init__(self, *reports: RelayReport | None) -> None:
        self.reports = list(reports)

    def report(self) -> RelayReport | None:
        return self.reports.pop(0) if len(self.reports) > 1 else self.reports[0]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += MONITOR_TTL  # each reading is a fresh one
        return self.now


def _monitor(reports: _Reports, end: int, clock: _Clock | None = None) -> FeedMonitor:
    return FeedMonitor(reports, lambda: end, clock or _Clock())  # type: ignore[arg-type]


def test_feed_monitor_reads_the_relays_report() -> None:
    fresh = RelayReport("h:1", 10, None, 0.1)
    assert _monitor(_Reports(fresh), 10).ok()
    assert _monitor(_Reports(None), 10).problem() == "no relay has reported"
    stale = RelayReport("h:1", 10, None, STALE_SECONDS + 1)
    assert "last reported" in (_monitor(_Reports(stale), 10).problem() or "")
    failing = RelayReport("h:1", 10, "NoBrokersAvailable", 0.1)
    assert "NoBrokersAvailable" in (_monitor(_Reports(failing), 10).problem() or "")


def test_feed_monitor_sees_a_relay_that_stopped_moving() -> None:
    clock = _Clock()
    stuck = _monitor(_Reports(RelayReport("h:1", 5, None, 0.1)), 9, clock)
    seen = []
    while clock.now < 100.0 + STALL_SECONDS + 4 * MONITOR_TTL:
        seen.append(stuck.problem())
    assert seen[0] is None  # behind the log: it may be publishing
    assert "has stayed at 5" in (seen[-1] or "")
    reports = [RelayReport("h:1", p, None, 0.1) for p in range(20)]
    moving = _monitor(_Reports(*reports), 25)
    assert [moving.problem() for _ in reports] == [None] * len(reports)


# --- repro 17: a killed projector held its partitions until a 10 s session timed out --------


def test_a_killed_projectors_partitions_move_to_the_survivor(
    scaled: Profile, tmp_path: Path, processes: list[Worker | ServerProcess]
) -> None:
    env = scaled.env()
    processes.append(Worker(["relay"], env, tmp_path / "relay.log"))
    one = Worker(["project", "--group", "pair"], env, tmp_path / "one.log")
    processes.append(one)
    two = Worker(["project", "--group", "pair"], env, tmp_path / "two.log")
    processes.append(two)

    def split() -> bool:
        a, b = one.assignments(), two.assignments()
        return bool(a and b and a[-1] and b[-1] and sorted(a[-1] + b[-1]) == list(range(6)))

    eventually(split, 60, "both projectors to hold partitions")
    one.kill()  # no goodbye to the group: only its session's expiry frees its partitions
    eventually(lambda: two.assignments()[-1] == list(range(6)), 30, "the survivor to take them all")
    sessions = [int(ms) for ms in _session_timeouts(two.log())]
    assert sessions and sessions[-1] <= 6000, sessions


def _session_timeouts(log: str) -> list[str]:
    return re.findall(r"with a (\d+) ms session timeout", log)
