"""PostgreSQL restarted under load: 503s (never 500s, never a hang) while it is down, and
the server recovers by itself when it is back, having lost or half-written nothing.

The end-to-end test stops and starts the GB_TEST_DATABASE_URL server with
`scripts/services down|up postgres` (its port from the URL, its cluster from GB_PG_CLUSTER,
default main), so it needs that server to be a local cluster the script controls; it is
always started again at the end. The breaker's own tests need no database.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import psycopg_pool
import pytest
from eventsourcing.persistence import OperationalError

from commands.ports import StoreUnavailable
from infra import eventstore
from infra.eventstore import Breaker, is_connection_failure, store_errors
from tests import pg
from tests.server import ServerProcess

needs_postgres = pytest.mark.skipif(
    not os.environ.get(pg.ENV, "").strip(),
    reason=f"restarts PostgreSQL: set {pg.ENV} to a local cluster's admin URL"
    " (e.g. the one `scripts/services up postgres` prints)",
)

THREADS = 6
PAUSE = 0.02  # between one thread's requests
OUTAGE = 6.0  # seconds PostgreSQL stays down
MAX_LATENCY = 5.0  # no request may take longer while the database is down
# Once it is back, a write also waits (GB_CONSISTENCY_TIMEOUT, 5 s) for projection workers
# that may still be in their retry backoff (up to 5 s, infra.runner) before answering 201,
# or 202 if they are not there yet.
MAX_LATENCY_RECOVERING = 5.0 + 2.0
RECOVERY = 15.0  # seconds allowed for writes and reads to succeed again
SETTLE = 6.0  # seconds other servers on the same PostgreSQL get to recover afterwards


@dataclass
class Call:
    op: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer (transport error)
    error: str = ""
    retry_after: str | None = None
    code: str | None = None  # a 503's error code, or health's status
    failing: frozenset[str] = frozenset()  # health's components in error

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Create:
    key: str
    title: str
    status: int
    task_id: str | None = None


class Load:
    """Mixed writes and reads from several threads, every call recorded."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.calls: list[Call] = []
        self.creates: list[Create] = []
        self.updated: set[str] = set()  # tasks an update was acknowledged (200) for
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(THREADS)
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _record(
        self, c: httpx.Client, op: str, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            r = c.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            call = Call(op, started, time.monotonic(), 0, f"{type(e).__name__}: {e}")
            with self._lock:
                self.calls.append(call)
            return None
        call = Call(op, started, time.monotonic(), r.status_code)
        if r.status_code == 503:
            call.retry_after = r.headers.get("retry-after")
            body = r.json()
            if op == "health":
                call.code = body["status"]
                call.failing = frozenset(k for k, v in body["components"].items() if v == "error")
            else:
                call.code = body["error"]["code"]
        elif r.status_code >= 400:
            call.error = r.text[:300]
        with self._lock:
            self.calls.append(call)
        return r

    def _run(self, n: int) -> None:
        ops: tuple[str, ...] = ("create", "list", "get", "update")
        if n == 0:
            # One thread checks health: concurrent checks race on the storage probe's file
            # (infra.bootstrap, one name per process) and report `storage: error`.
            ops += ("health",)
        known: list[str] = []  # this thread's acknowledged tasks (no two threads update one)
        with self.server.client() as c:
            c.timeout = httpx.Timeout(30.0)  # a hang shows as a slow call, not an error
            i = n
            while not self._stop.is_set():
                op = ops[i % len(ops)]
                i += 1
                if op == "create":
                    key, title = uuid.uuid4().hex, f"outage {uuid.uuid4().hex}"
                    headers = {"Idempotency-Key": key}
                    r = self._record(
                        c, op, "POST", "/api/tasks", json={"title": title}, headers=headers
                    )
                    create = Create(key, title, r.status_code if r is not None else 0)
                    if r is not None and r.status_code in (201, 202):  # 202: not yet projected
                        create.task_id = r.headers["location"].rsplit("/", 1)[-1]
                        known.append(create.task_id)
                    with self._lock:
                        self.creates.append(create)
                elif op == "list":
                    self._record(c, op, "GET", "/api/tasks", params={"limit": 5})
                elif op == "get" and known:
                    self._record(c, op, "GET", f"/api/tasks/{known[i % len(known)]}")
                elif op == "update" and known:
                    tid = known[i % len(known)]
                    r = self._record(c, op, "PUT", f"/api/tasks/{tid}", json={"priority": "high"})
                    if r is not None and r.status_code in (200, 202):
                        with self._lock:
                            self.updated.add(tid)
                elif op == "health":
                    self._record(c, op, "GET", "/api/health")
                time.sleep(PAUSE)


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _all_tasks(c: httpx.Client) -> list[dict[str, object]]:
    tasks: list[dict[str, object]] = []
    while True:
        r = c.get("/api/tasks", params={"limit": 200, "offset": len(tasks)})
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        if not page:
            return tasks
        tasks += page


@pytest.fixture
def postgres_restartable() -> Iterator[None]:
    """Checks that scripts/services controls the test server; starts it again afterwards."""
    status = pg.service("status")
    if status.returncode != 0:
        pytest.skip(
            f"{pg.ENV}'s server is not a local cluster scripts/services controls"
            f" (GB_PG_CLUSTER={os.environ.get('GB_PG_CLUSTER', 'main')}):"
            f" {status.stdout.strip()} {status.stderr.strip()}"
        )
    try:
        yield
    finally:
        up = pg.service("up")  # whatever happened: other tests share this server
        assert up.returncode == 0, f"could not restart PostgreSQL: {up.stderr}"
        # Their servers (the session's) lived through the outage too: let their projection
        # workers come out of their retry backoff (at most 5 s) before the next test writes.
        time.sleep(SETTLE)


@needs_postgres
def test_postgres_restart_under_load(postgres_restartable: None, tmp_path: Path) -> None:
    url = pg.fresh_database_url()
    assert url is not None
    server = ServerProcess(tmp_path / "data", {"GB_DATABASE_URL": url})
    try:
        server.start()
        # A user whose token the server has not seen: authenticating it needs the database.
        with server.client() as admin:
            r = admin.post("/api/admin/tokens", json={"user": "late@example.com", "role": "user"})
            assert r.status_code == 201, r.text
            unseen_token = r.json()["token"]
        with Load(server) as load:
            time.sleep(1.5)
            stopping = time.monotonic()
            down = pg.service("down")
            assert down.returncode == 0, down.stderr
            stopped = time.monotonic()  # from here no connection can succeed
            time.sleep(OUTAGE / 2)
            with server.client(unseen_token) as late:
                t0 = time.monotonic()
                r = late.get("/api/tasks")
                unseen = (r.status_code, time.monotonic() - t0, r.text[:300])
            time.sleep(OUTAGE / 2)
            restarting = time.monotonic()  # until here no connection could succeed
            up = pg.service("up")
            assert up.returncode == 0, up.stderr
            back = time.monotonic()
            recovered_at = _wait_for_recovery(server, back + RECOVERY)
            time.sleep(1.5)  # the load runs on the recovered server a little
        calls, creates, updated = load.calls, load.creates, load.updated

        _report(calls, stopping, stopped, restarting, back, recovered_at, unseen)
        # Never a 500, never a dropped connection, never a hang.
        assert not [c for c in calls if c.status == 0 or c.status >= 500 and c.status != 503]
        slow = [c for c in calls if c.seconds >= MAX_LATENCY and c.ended < restarting]
        assert not slow, slow[:5]
        slow = [c for c in calls if c.seconds >= MAX_LATENCY_RECOVERING]
        assert not slow, slow[:5]
        # Whatever is not a success is a proper 503: the error envelope and Retry-After, or
        # the health report naming the database.
        for c in calls:
            assert c.status in (200, 201, 202, 204, 503), c
            if c.status == 503 and c.op == "health":
                assert c.code == "unhealthy", c
                assert {"database", "event_store", "read_store"} <= c.failing, c
            elif c.status == 503:
                assert (c.code, c.retry_after) == ("SERVICE_UNAVAILABLE", "1"), c
        # While PostgreSQL was down, everything (all of it needs the database) answered 503.
        during = [c for c in calls if c.started > stopped and c.ended < restarting]
        assert during and all(c.status == 503 for c in during), [
            c for c in during if c.status != 503
        ][:5]
        assert unseen[0] == 503, unseen
        assert recovered_at is not None, f"no write and read succeeded within {RECOVERY} s"
        # Calls started a moment after the recovery all succeeded.
        settled = [c for c in calls if c.started > recovered_at + 1.0]
        assert settled and all(200 <= c.status < 300 for c in settled), [
            c for c in settled if not 200 <= c.status < 300
        ][:5]
        assert len(calls) > 200, len(calls)

        _check_nothing_lost(server, creates, updated)
    finally:
        server.stop()
        pg.service("up")  # idempotent; so that the database can be dropped
        pg.drop_database(url)


def _wait_for_recovery(server: ServerProcess, deadline: float) -> float | None:
    """When a write and a read both succeed again (None if not before the deadline)."""
    with server.client() as c:
        c.timeout = httpx.Timeout(10.0)
        while time.monotonic() < deadline:
            try:
                w = c.post("/api/tasks", json={"title": f"probe {uuid.uuid4().hex}"})
                r = c.get("/api/tasks", params={"limit": 1})
                if w.status_code == 201 and r.status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return None


def _check_nothing_lost(server: ServerProcess, creates: list[Create], updated: set[str]) -> None:
    """Every acknowledged write is readable; a create that got 503 (or no answer) either
    never happened or happened whole: retried with its Idempotency-Key it yields exactly one
    task, the first one if it had been recorded."""
    with server.client() as c:
        deadline = time.monotonic() + RECOVERY  # a 202's write may still be on its way
        for create in creates:
            if not create.task_id:
                continue
            want = {"title": create.title}
            if create.task_id in updated:
                want["priority"] = "high"
            while True:
                r = c.get(f"/api/tasks/{create.task_id}")
                got = {k: r.json().get(k) for k in want} if r.status_code == 200 else {}
                if got == want or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert (r.status_code, got) == (200, want), (create, r.text)
        failed = [cr for cr in creates if not cr.task_id]
        assert failed, "the outage refused no create: it did not test anything"
        replayed = 0
        for create in failed:
            r = c.post(
                "/api/tasks",
                json={"title": create.title},
                headers={"Idempotency-Key": create.key},
            )
            assert r.status_code == 201, (create, r.text)
            replayed += r.headers.get("Idempotent-Replayed") == "true"
        titles = [str(t["title"]) for t in _all_tasks(c)]
        outage_titles = [t for t in titles if t.startswith("outage ")]
        assert len(outage_titles) == len(set(outage_titles)) == len(creates)
        print(
            f"creates: {len(creates) - len(failed)} acknowledged, {len(failed)} refused;"
            f" of the refused, {replayed} had been recorded (replayed on retry)"
        )


def _report(
    calls: list[Call],
    stopping: float,
    stopped: float,
    restarting: float,
    back: float,
    recovered_at: float | None,
    unseen: tuple[int, float, str],
) -> None:
    during = [c.seconds for c in calls if c.started > stopped and c.ended < restarting]
    touched = [c.seconds for c in calls if c.ended > stopping and c.started < restarting]
    everything = [c.seconds for c in calls]
    statuses: dict[int, int] = {}
    for c in calls:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    after = [c for c in calls if c.started > restarting and 200 <= c.status < 300]
    firsts = {
        op: min((c.ended for c in after if c.op == op), default=float("nan")) - restarting
        for op in ("list", "create")
    }
    print(
        f"\nPostgreSQL restarted in {back - restarting:.2f} s (scripts/services up); first"
        f" 200 list {firsts['list']:.2f} s and first 2xx create {firsts['create']:.2f} s"
        " after the restart began"
    )
    for c in sorted(calls, key=lambda c: c.seconds)[-3:]:
        print(
            f"slow: {c.op} {c.status} {c.seconds:.2f} s, from {c.started - stopped:+.2f} s"
            f" after the stop ({c.started - restarting:+.2f} s after the restart began)"
        )
    print(
        f"{len(calls)} calls {dict(sorted(statuses.items()))};"
        f" while down ({len(during)} calls): p50 {_percentile(during, 50) * 1000:.0f} ms,"
        f" p99 {_percentile(during, 99) * 1000:.0f} ms, max {max(during, default=0):.2f} s;"
        f" overlapping the outage ({len(touched)} calls): p50"
        f" {_percentile(touched, 50) * 1000:.0f} ms, p99 {_percentile(touched, 99) * 1000:.0f}"
        f" ms, max {max(touched, default=0):.2f} s;"
        f" overall max {max(everything, default=0):.2f} s;"
        f" unseen token while down: {unseen[0]} in {unseen[1] * 1000:.0f} ms;"
        f" a write (201) and a read (200) succeeded"
        f" {(recovered_at - back) if recovered_at else float('nan'):.2f} s after"
        " scripts/services up returned"
    )


# --- the breaker, without a database ------------------------------------------------------


def _library_error(cause: Exception) -> OperationalError:
    """The library's error as its PostgresDatastore raises it: `from` psycopg's."""
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as e:
        return e


class FakePool:
    def __init__(self) -> None:
        self.kwargs: dict[str, object] = {}
        self.reconnect_timeout = 300.0
        self.closed = False
        self.drained = 0

    def drain(self) -> None:
        self.drained += 1


class FlakyProbe:
    """Fails `failures` times, then connects."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise psycopg.OperationalError("connection refused")


def _wait_closed(breaker: Breaker, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            breaker.check()
            return
        except StoreUnavailable:
            time.sleep(0.01)
    raise AssertionError("the breaker did not close")


def test_which_errors_mean_postgres_is_unreachable() -> None:
    gone: list[Exception] = [
        psycopg_pool.PoolTimeout("couldn't get a connection after 2.00 sec"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.InterfaceError("the connection is closed"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
    ]
    for error in gone:
        assert is_connection_failure(_library_error(error)), error
    statement_failures: list[Exception] = [
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        Exception("sqlite3.OperationalError: database is locked"),
    ]
    for error in statement_failures:
        assert not is_connection_failure(_library_error(error)), error


def test_breaker_fails_fast_until_the_probe_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventstore, "PROBE_INTERVAL", 0.01)
    probe = FlakyProbe(failures=3)
    breaker, pool = Breaker(probe), FakePool()
    breaker.guard(pool)  # type: ignore[arg-type]
    assert pool.reconnect_timeout == eventstore.RECONNECT_TIMEOUT
    assert pool.kwargs["connect_timeout"] == eventstore.LIBPQ_CONNECT_TIMEOUT

    # A connection failure opens it: the caller gets the ports' error, the next ones too,
    # at once and without running their operation.
    with pytest.raises(StoreUnavailable), store_errors(breaker):
        raise _library_error(psycopg_pool.PoolTimeout("couldn't get a connection"))
    ran = False
    with pytest.raises(StoreUnavailable), store_errors(breaker):
        ran = True
    assert not ran
    # The probe retries in the background; once it connects, the pool is renewed (its
    # connections predate the outage) and operations go through again.
    _wait_closed(breaker)
    assert probe.calls == 4 and pool.drained == 1
    with store_errors(breaker):
        ran = True
    assert ran


def test_breaker_ignores_statement_failures_and_spares_a_live_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventstore, "PROBE_INTERVAL", 0.01)
    probe = FlakyProbe(failures=0)
    breaker, pool = Breaker(probe), FakePool()
    breaker.guard(pool)  # type: ignore[arg-type]
    # A statement's own failure is a 503 for its request, not an outage.
    with pytest.raises(StoreUnavailable), store_errors(breaker):
        raise _library_error(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert probe.calls == 0
    with store_errors(breaker):
        pass
    # A pool timeout whose probe connects at once (a busy pool, not an outage) closes the
    # breaker again without dropping the pool's connections.
    with pytest.raises(StoreUnavailable), store_errors(breaker):
        raise _library_error(psycopg_pool.PoolTimeout("couldn't get a connection"))
    _wait_closed(breaker)
    assert probe.calls == 1 and pool.drained == 0
