"""Projection lag benchmark: how long after a write commits it is visible in the read model,
next to the time of one plain read of that model, measured in the same run.

Run from the repository root with the project's venv:

    .venv/bin/python -m bench.lag                          # embedded only, ~30 s
    GB_TEST_DATABASE_URL=$(scripts/services up postgres) \\
    GB_TEST_KAFKA_BOOTSTRAP=$(scripts/services up kafka) \\
        .venv/bin/python -m bench.lag                      # + Kafka profile, ~1 min
    .venv/bin/python -m bench.lag --writes 1000 --cross-writes 0 --json lag.json

Method. The benchmark process is the writer: it opens `Services` for the profile's settings
and, one write at a time, saves a new `domain.tasks.Task` with `services.events.save(task)`
(one TaskCreated event), takes the commit time when save() returns, then probes the read
model with `projections.tasks.get_task(services.read, id, admin)`, pausing `--poll-ms`
(0.5 ms) between probes, until the row is there. lag = the end of the first probe that finds
it - the commit time, so its resolution is one probe + pause (~0.6 ms on SQLite) and it is
never below one SELECT. The next write starts once the row is seen. A few unmeasured warm-up
writes go first (they also wait for a Kafka consumer group to be joined). The baseline is one
plain `get_task` of rows that are there (each written task, once), timed the same way:
lag/SELECT says how many single reads the lag is worth. "save p50" is the write itself
(save() call), for scale.

Where the feed runs matters: a save wakes the feed workers of its own process at once
(infra.runner.LogSignal); workers in another process notice it at their next poll of the log
(every POLL_SECONDS = 1 s in infra.runner and infra.kafka) unless the store tells them sooner
(on PostgreSQL, infra/pgnotify.py's LISTEN/NOTIFY listener, where the working tree has it).
The rows ("feed" column):

- embedded, "workers in writer process": SQLite; `services.start_workers()` in the benchmark
  process runs the projection workers next to the writer, as `gbserver serve` runs them next
  to its HTTP handlers (`--writes` samples).
- embedded, "writer outside `gbserver serve`": a real `gbserver serve` process runs the
  workers on the same data dir and the benchmark process writes to its log: the lag of any
  writer outside the server (the CLI, another process); SQLite has no notification, so this
  is the 1 s poll.
- kafka, "relay in writer, `gbserver project`": PostgreSQL (a fresh database) and Kafka (a
  fresh topic). The relay runs in the benchmark process (`start_workers(relay=True,
  projectors=False)`), so a save wakes it as a save through `serve`'s HTTP API does; the
  projector is a separate `python -m infra.cli project` process (a consumer group member), so
  the lag is relay -> broker -> consumer -> PostgreSQL commit (`--writes` samples).
- kafka, "writer outside `gbserver serve`": a real `gbserver serve` process runs the relay
  and the projector, the benchmark process writes to the database: the server's relay learns
  of the write by NOTIFY (or by its 1 s poll where there is no listener).

The two "writer outside" rows take `--cross-writes` samples, each after a random pause of
0-1 s: against a polling feed, a writer that wrote again as soon as it saw its last write
would always land just after the poll and see the full second every time; the pause samples
writes that arrive independently of the poll (expect p50 around 500 ms there). It changes
nothing for a notified feed.

The Kafka rows need GB_TEST_DATABASE_URL (an admin URL with CREATEDB) and
GB_TEST_KAFKA_BOOTSTRAP, as the test suite does; without them they are skipped with the
reason. Temp dirs, databases, topics and child processes are removed / stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import (
    Child,
    Stats,
    describe_json,
    fresh_database,
    kafka_bootstrap,
    kafka_topic,
    kafka_unavailable,
    make_console,
    postgres_unavailable,
    print_machine,
    process,
    quiet_libraries,
    ratio,
    stats,
)
from bench.run import HOST, at_least, clean_env, free_port, gbserver, machine, wait_ready
from domain.common import Actor
from domain.tasks import Task
from infra.bootstrap import Services
from infra.config import Settings
from infra.kafka import POLL_SECONDS as RELAY_POLL_SECONDS
from infra.runner import POLL_SECONDS as WORKER_POLL_SECONDS
from projections.tasks import get_task

WARMUP_TIMEOUT = 60.0  # the first write may wait for a consumer group to be joined
ADMIN = Actor("bench@example.com", is_admin=True)
# The "feed" column: where the workers that move the log into the read model run.
LOCAL_FEED = "workers in writer process"
RELAY_FEED = "relay in writer, `gbserver project`"
CROSS_FEED = "writer outside `gbserver serve`"

Check = Callable[[], None]  # raises when a child process has died


@dataclass(frozen=True)
class Probing:
    """How to wait for a write to show: probe, pause `pause` s, ... for up to `timeout` s;
    `check` (run when it times out, and after each series) raises if a child process died."""

    timeout: float
    pause: float
    check: Check


def probing(args: argparse.Namespace, check: Check) -> Probing:
    return Probing(args.timeout, args.poll_ms / 1000, check)


@dataclass(frozen=True)
class LagResult:
    profile: str
    feed: str
    commit: Stats  # save() duration, for scale
    lag: Stats  # commit -> first probe that sees the row
    select: Stats  # one get_task of a row that is there


# --- the measurement ---------------------------------------------------------------------


def new_task(n: int) -> Task:
    return Task(
        owner="bench@example.com",
        title=f"lag {n}",
        description=None,
        due_date=None,
        priority="low",
        status="pending",
        assignee=None,
    )


def visible(services: Services, task_id: str) -> bool:
    return get_task(services.read, task_id, ADMIN) is not None


def wait_visible(services: Services, task_id: str, how: Probing) -> float:
    """Polls until the task is in the read model; returns when the finding probe ended."""
    deadline = time.perf_counter() + how.timeout
    while True:
        found = visible(services, task_id)
        now = time.perf_counter()
        if found:
            return now
        if now > deadline:
            how.check()
            raise RuntimeError(f"task {task_id} not visible after {how.timeout:g} s")
        time.sleep(how.pause)


def write_and_wait(services: Services, n: int, how: Probing) -> tuple[str, float, float]:
    """One write: (task id, save() ms, lag ms)."""
    task = new_task(n)
    began = time.perf_counter()
    services.events.save(task)
    committed = time.perf_counter()
    seen = wait_visible(services, str(task.id), how)
    return str(task.id), (committed - began) * 1000, (seen - committed) * 1000


def select_ms(services: Services, task_ids: Sequence[str]) -> list[float]:
    """One timed get_task per id (all present)."""
    samples = []
    for task_id in task_ids:
        began = time.perf_counter()
        found = visible(services, task_id)
        samples.append((time.perf_counter() - began) * 1000)
        if not found:
            raise RuntimeError(f"task {task_id} vanished from the read model")
    return samples


def measure(
    services: Services,
    count: int,
    warmup: int,
    how: Probing,
    jitter: float = 0.0,
) -> tuple[Stats, Stats, Stats]:
    """Warm-up writes, then `count` measured ones, each after a random pause of up to
    `jitter` seconds; then the SELECT baseline over the written rows."""
    for n in range(warmup):
        write_and_wait(services, -1 - n, replace(how, timeout=WARMUP_TIMEOUT) if n == 0 else how)
    ids, commits, lags = [], [], []
    for n in range(count):
        if jitter > 0:
            time.sleep(random.uniform(0.0, jitter))
        task_id, commit_ms, lag_ms = write_and_wait(services, n, how)
        ids.append(task_id)
        commits.append(commit_ms)
        lags.append(lag_ms)
    how.check()
    return stats(commits), stats(lags), stats(select_ms(services, ids))


@contextmanager
def opened(env: dict[str, str]) -> Iterator[Services]:
    services = Services.open(Settings.from_env(env))
    try:
        yield services
    finally:
        services.close()


def no_check() -> None:
    return None


# --- the four set-ups --------------------------------------------------------------------


def embedded_in_process(tmp: Path, args: argparse.Namespace) -> LagResult:
    with opened({"GB_DATA_DIR": str(tmp / "data")}) as services:
        services.start_workers()
        figures = measure(services, args.writes, args.warmup, probing(args, no_check))
    return LagResult("embedded", LOCAL_FEED, *figures)


def measure_cross(
    services: Services, args: argparse.Namespace, check: Check, poll: float
) -> tuple[Stats, Stats, Stats]:
    """For a writer outside the server: where the server's feed polls every `poll` seconds, a
    writer that wrote again as soon as it saw its last write would always land just after a
    poll (lag = `poll` every time). A random pause before each write samples the lag of
    writes that arrive independently of the poll instead. One warm-up: `serve` has started
    its workers (and joined its consumer group) before it answers /api/health."""
    how = probing(args, check)
    return measure(services, args.cross_writes, min(args.warmup, 1), how, poll)


@contextmanager
def serving(tmp: Path, env: dict[str, str]) -> Iterator[Child]:
    """A real `gbserver serve` (bench.run's command line, plus `env`), once /api/health is 200;
    stopped with SIGINT (see bench.common.process)."""
    token = "gb_bench_" + secrets.token_urlsafe(32)
    base = gbserver(tmp / "data", token, free_port())
    log_path = tmp / "serve.log"
    with process("gbserver serve", base.argv, {**base.env, **env}, log_path) as child:
        url = f"http://{HOST}:{base.port}{base.ready_path}"
        wait_ready(child.proc, url, base.headers, log_path)
        yield child


def embedded_cross_process(tmp: Path, args: argparse.Namespace) -> LagResult:
    env = {"GB_DATA_DIR": str(tmp / "data")}
    with serving(tmp, env) as server, opened(env) as services:
        figures = measure_cross(services, args, server.ensure_alive, WORKER_POLL_SECONDS)
    return LagResult("embedded", CROSS_FEED, *figures)


def kafka_env(tmp: Path, url: str, topic: str) -> dict[str, str]:
    return {
        "GB_DATA_DIR": str(tmp / "data"),
        "GB_DATABASE_URL": url,
        "GB_KAFKA_BOOTSTRAP": kafka_bootstrap(),
        "GB_KAFKA_TOPIC": topic,
    }


def kafka_relay_in_process(tmp: Path, args: argparse.Namespace) -> LagResult:
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        env = kafka_env(tmp, url, stack.enter_context(kafka_topic()))
        projector = stack.enter_context(
            process(
                "gbserver project",
                [sys.executable, "-m", "infra.cli", "project"],
                clean_env({**env, "GB_LOG_LEVEL": "info"}),
                tmp / "project.log",
            )
        )
        services = stack.enter_context(opened(env))
        services.start_workers(relay=True, projectors=False)
        how = probing(args, projector.ensure_alive)
        figures = measure(services, args.writes, args.warmup, how)
    return LagResult("kafka", RELAY_FEED, *figures)


def kafka_cross_process(tmp: Path, args: argparse.Namespace) -> LagResult:
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database())
        env = kafka_env(tmp, url, stack.enter_context(kafka_topic()))
        server = stack.enter_context(serving(tmp, env))
        services = stack.enter_context(opened(env))
        figures = measure_cross(services, args, server.ensure_alive, RELAY_POLL_SECONDS)
    return LagResult("kafka", CROSS_FEED, *figures)


# --- running and reporting ---------------------------------------------------------------

Setup = Callable[[Path, argparse.Namespace], LagResult]


@dataclass(frozen=True)
class Plan:
    profile: str
    feed: str
    setup: Setup
    count: int


def plans(args: argparse.Namespace, console: Console) -> list[Plan]:
    chosen = [
        Plan("embedded", LOCAL_FEED, embedded_in_process, args.writes),
        Plan("embedded", CROSS_FEED, embedded_cross_process, args.cross_writes),
    ]
    why = "--no-kafka given" if args.no_kafka else postgres_unavailable() or kafka_unavailable()
    if why:
        console.print(f"kafka profile: skipped: {why}", markup=False)
    else:
        chosen += [
            Plan("kafka", RELAY_FEED, kafka_relay_in_process, args.writes),
            Plan("kafka", CROSS_FEED, kafka_cross_process, args.cross_writes),
        ]
    return [p for p in chosen if p.count > 0]


def run_all(args: argparse.Namespace, console: Console) -> list[LagResult]:
    results = []
    for plan in plans(args, console):
        console.print(f"{plan.profile}, {plan.feed}: {plan.count} writes ...", markup=False)
        with tempfile.TemporaryDirectory(prefix="gbbench-lag-") as tmp:
            results.append(plan.setup(Path(tmp), args))
    return results


def table(results: Sequence[LagResult]) -> Table:
    out = Table(title="projection lag (commit -> visible in read model) vs one SELECT, ms")
    out.add_column("profile", justify="left")
    out.add_column("feed", justify="left")
    for column in (
        "writes",
        "save p50",
        "lag p50",
        "lag p99",
        "lag max",
        "SELECT p50",
        "SELECT p99",
        "lag/SELECT p50",
        "lag/SELECT p99",
    ):
        out.add_column(column, justify="right")
    for r in results:
        out.add_row(
            r.profile,
            r.feed,
            str(r.lag.n),
            f"{r.commit.p50:.2f}",
            f"{r.lag.p50:.2f}",
            f"{r.lag.p99:.2f}",
            f"{r.lag.max:.2f}",
            f"{r.select.p50:.3f}",
            f"{r.select.p99:.3f}",
            ratio(r.lag.p50, r.select.p50),
            ratio(r.lag.p99, r.select.p99),
        )
    return out


def write_json(path: Path, args: argparse.Namespace, results: Sequence[LagResult]) -> None:
    document = {
        "machine": machine(),
        "params": {
            "writes": args.writes,
            "cross_writes": args.cross_writes,
            "warmup": args.warmup,
            "poll_ms": args.poll_ms,
        },
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(describe_json(document), indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.lag", description="Projection lag (commit -> read model) vs one SELECT."
    )
    parser.add_argument(
        "--writes",
        type=at_least(int, 0, strict=False),
        default=300,
        help="measured writes with the feed woken by the writer (default 300)",
    )
    parser.add_argument(
        "--cross-writes",
        type=at_least(int, 0, strict=False),
        default=20,
        help="measured writes from outside a `gbserver serve` process, each after a random "
        "0-1 s pause (default 20; 0 skips those rows)",
    )
    parser.add_argument(
        "--warmup",
        type=at_least(int, 0, strict=False),
        default=5,
        help="unmeasured writes first (default 5)",
    )
    parser.add_argument(
        "--timeout",
        type=at_least(float, 0, strict=True),
        default=10.0,
        help="seconds one write may take to become visible (default 10)",
    )
    parser.add_argument(
        "--poll-ms",
        type=at_least(float, 0, strict=False),
        default=0.5,
        help="pause between probes of the read model (default 0.5; 0 spins, which takes the "
        "GIL from in-process workers)",
    )
    parser.add_argument(
        "--no-kafka", action="store_true", help="skip the Kafka profile even when available"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    console = make_console()
    print_machine(console)
    console.print(
        f"params: {args.writes} writes (feed woken by the writer), {args.cross_writes} writes "
        f"(writer outside `gbserver serve`); {args.warmup} warm-up writes first "
        f"({min(args.warmup, 1)} for outside writers); "
        f"probe pause {args.poll_ms:g} ms",
        markup=False,
    )
    try:
        results = run_all(args, console)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except RuntimeError as e:
        console.print(f"bench failed: {e}", markup=False)
        return 1
    console.print(table(results))
    if args.json:
        write_json(args.json, args, results)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
