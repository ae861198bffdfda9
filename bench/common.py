"""Helpers shared by bench.lag and bench.rebuild (bench.run keeps its own, and is reused here).

- `Stats`: p50/p99/max of a list of millisecond samples (nearest rank, as in bench.run).
- The optional services, found the way the test suite finds them: GB_TEST_DATABASE_URL (an
  admin URL with CREATEDB, e.g. `scripts/services up postgres`) and GB_TEST_KAFKA_BOOTSTRAP
  (e.g. `scripts/services up kafka`). `postgres_unavailable()` / `kafka_unavailable()` say
  why a part must be skipped, or None when it can run.
- `fresh_database()` / `kafka_topic()`: a new PostgreSQL database or Kafka topic for one
  measurement, always dropped / deleted afterwards.
- `process()`: a child process (`gbserver serve`, `gbserver project`) stopped on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from bench.run import ROOT, machine, percentile, stop_process, tail

PG_ENV = "GB_TEST_DATABASE_URL"
KAFKA_ENV = "GB_TEST_KAFKA_BOOTSTRAP"
T = TypeVar("T")


@dataclass(frozen=True)
class Stats:
    """Summary of millisecond samples."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float


def stats(samples_ms: Sequence[float]) -> Stats:
    ordered = sorted(samples_ms)
    if not ordered:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan)
    return Stats(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )


def ratio(numerator: float, denominator: float) -> str:
    if denominator != denominator or numerator != numerator or denominator == 0:  # NaN or 0
        return "n/a"
    return f"{numerator / denominator:,.2f}"


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """The action's result and its wall-clock seconds."""
    began = time.perf_counter()
    result = action()
    return result, time.perf_counter() - began


def make_console() -> Console:
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)  # one line per table row in logs and pipes
    return console


def print_machine(console: Console) -> None:
    host = machine()
    console.print(f"machine: {host['cpu_count']} CPUs, {host['platform']}, Python {host['python']}")


def quiet_libraries() -> None:
    """As `gbserver` does: kafka-python logs every failed reconnect at ERROR."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


# --- PostgreSQL --------------------------------------------------------------------------


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL parts cannot run, or None when they can."""
    admin = os.environ.get(PG_ENV, "").strip()
    if not admin:
        return f"{PG_ENV} is not set (e.g. export {PG_ENV}=$(scripts/services up postgres))"
    import psycopg

    try:
        with psycopg.connect(admin, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return f"cannot connect to {PG_ENV}: {str(e).strip().splitlines()[0]}"
    return None


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on GB_TEST_DATABASE_URL's server, dropped on exit."""
    from tests import pg

    url = pg.fresh_database_url()
    if url is None:
        raise RuntimeError(f"{PG_ENV} is not set")
    try:
        yield url
    finally:
        pg.drop_database(url)


# --- Kafka -------------------------------------------------------------------------------


def kafka_bootstrap() -> str:
    return os.environ.get(KAFKA_ENV, "").strip()


def kafka_unavailable() -> str | None:
    """Why the Kafka parts cannot run, or None when they can."""
    bootstrap = kafka_bootstrap()
    if not bootstrap:
        return f"{KAFKA_ENV} is not set (e.g. export {KAFKA_ENV}=$(scripts/services up kafka))"
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="gbserver-bench",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        reason = str(e) if str(e).startswith(type(e).__name__) else f"{type(e).__name__}: {e}"
        return f"cannot reach Kafka at {bootstrap}: {reason}"
    return None


@contextlib.contextmanager
def kafka_topic(prefix: str = "gbbench") -> Iterator[str]:
    """A unique topic name (created by the relay / projector); the topic and its default
    consumer group (`TOPIC.projectors`) are deleted on exit, best effort."""
    topic = f"{prefix}.{uuid.uuid4().hex[:12]}"
    try:
        yield topic
    finally:
        delete_topic(kafka_bootstrap(), topic)


def delete_topic(bootstrap: str, topic: str, attempts: int = 10) -> None:
    """Deletes the topic and its default consumer group. A group whose last member has just
    left may not be deletable yet (NON_EMPTY_GROUP): retried for a few seconds."""
    from kafka.admin import KafkaAdminClient

    group = f"{topic}.projectors"
    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="gbserver-bench", request_timeout_ms=5000
        )
        try:
            for _ in range(attempts):
                outcome = admin.delete_groups([group]).get(group)
                if outcome in ("OK", None) or "NotFound" in str(outcome):
                    break
                time.sleep(0.5)
            else:
                print(f"note: consumer group {group} not deleted: {outcome}", file=sys.stderr)
            with contextlib.suppress(Exception):
                admin.delete_topics([topic], timeout_ms=5000)
        finally:
            admin.close()


# --- child processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def ensure_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log_path)}"
            )


@contextlib.contextmanager
def process(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[Child]:
    """Starts argv (cwd: the repository root), yields it, and always stops it: with SIGINT,
    which `gbserver serve` turns into a shutdown that runs its cleanup (SIGTERM does not: uvicorn
    re-raises it after its own shutdown, which kills the process before `Services.close()`, so
    a Kafka projector would stay in its group until its session times out), then as
    bench.run.stop_process does (SIGTERM, SIGKILL)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield Child(name, proc, log_path)
        finally:
            interrupt(proc)


def interrupt(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    stop_process(proc)


def describe_json(value: Any) -> Any:
    """NaN-free JSON values (NaN becomes None)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: describe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe_json(v) for v in value]
    return value
