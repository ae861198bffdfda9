"""Rebuild benchmark: replaying the event log into the tasks read model, in events/s, next to
the raw rate of reading the same log in the same run.

Run from the repository root with the project's venv:

    .venv/bin/python -m bench.rebuild                    # 10,000 tasks = 20,000 events, ~1 min
    .venv/bin/python -m bench.rebuild --tasks 2000 --rounds 1
    GB_TEST_DATABASE_URL=$(scripts/services up postgres) .venv/bin/python -m bench.rebuild

For each store (SQLite always; PostgreSQL when GB_TEST_DATABASE_URL names a reachable server,
on a fresh database that is dropped afterwards):

1. Generates the log with tests/load.py `write_tasks` (each task created then renamed: two
   events per task), straight into the event store.
2. Opens `Services` on it (no workers) and reads the whole log once, untimed (warms caches).
3. Times, `--rounds` times each, in this order per round:
   - raw read: `events.notifications(after, 5000, ())` to the end of the log;
   - read + decode: the same, plus `events.decode(n)` of every notification;
   - rebuild: the online rebuild, `ProjectionOps.rebuild("tasks")`, which replays and applies
     the whole log into a shadow store, then swaps its tables in.
   and reports the median round as events/s, with rebuild/raw and rebuild/decode ratios.
4. Checks the rebuilt table holds one row per task.

The raw read is the ceiling a rebuild cannot beat (it reads the same batches); the decode
column shows how much of the gap is deserialisation, the rest is applying the events.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import (
    describe_json,
    fresh_database,
    make_console,
    postgres_unavailable,
    print_machine,
    ratio,
    timed,
)
from bench.run import at_least, machine
from infra.bootstrap import Services
from infra.config import Settings
from infra.eventstore import EventStoreAdapter
from tests.load import write_tasks

READ_BATCH = 5000


@dataclass(frozen=True)
class RebuildResult:
    store: str
    tasks: int
    events: int  # notifications in the log
    applied: int  # events the rebuild applied to the tasks projection
    generate_s: float  # writing the log (for scale, not compared)
    raw_s: float  # medians over the rounds
    decode_s: float
    rebuild_s: float

    def rate(self, seconds: float) -> float:
        return self.events / seconds if seconds > 0 else float("nan")


# --- what is timed -----------------------------------------------------------------------


def read_raw(events: EventStoreAdapter) -> int:
    """Reads the notification log to the end in batches; returns how many it read."""
    after, count = 0, 0
    while batch := events.notifications(after, READ_BATCH, ()):
        after = batch[-1].id
        count += len(batch)
    return count


def read_decoded(events: EventStoreAdapter) -> int:
    """As read_raw, and decodes every notification into its domain event."""
    after, count = 0, 0
    while batch := events.notifications(after, READ_BATCH, ()):
        for n in batch:
            events.decode(n)
        after = batch[-1].id
        count += len(batch)
    return count


def rebuild_tasks(services: Services) -> int:
    return services.operations().rebuild("tasks", lambda *_: None)


def task_rows(services: Services) -> int:
    with services.read.read() as sql:
        sql.execute("SELECT COUNT(*) AS n FROM tasks")
        row = sql.fetchone()
    return int(row["n"]) if row else 0


# --- one store ---------------------------------------------------------------------------


@contextmanager
def opened(env: dict[str, str]) -> Iterator[Services]:
    services = Services.open(Settings.from_env(env))
    try:
        yield services
    finally:
        services.close()


def checked_seconds(action: Callable[[], int], expect: int, what: str) -> float:
    """Times a read of the whole log, which must see `expect` events."""
    count, seconds = timed(action)
    if count != expect:
        raise RuntimeError(f"{what} saw {count} events, expected {expect}")
    return seconds


def bench_store(store: str, env: dict[str, str], args: argparse.Namespace) -> RebuildResult:
    _, generate_s = timed(lambda: write_tasks(env, args.tasks, title="bench"))
    with opened(env) as services:
        total = services.events.max_notification_id()
        read_raw(services.events)  # warm-up, untimed
        raw: list[float] = []
        decode: list[float] = []
        replay: list[float] = []
        applied = 0
        for _ in range(args.rounds):  # interleaved, so drift hits all three alike
            raw.append(checked_seconds(lambda: read_raw(services.events), total, "raw read"))
            decode.append(checked_seconds(lambda: read_decoded(services.events), total, "decode"))
            applied, seconds = timed(lambda: rebuild_tasks(services))
            replay.append(seconds)
        rows = task_rows(services)
    if rows != args.tasks:
        raise RuntimeError(f"{store}: rebuilt tasks table has {rows} rows, expected {args.tasks}")
    return RebuildResult(
        store=store,
        tasks=args.tasks,
        events=total,
        applied=applied,
        generate_s=generate_s,
        raw_s=statistics.median(raw),
        decode_s=statistics.median(decode),
        rebuild_s=statistics.median(replay),
    )


def bench_sqlite(args: argparse.Namespace) -> RebuildResult:
    with tempfile.TemporaryDirectory(prefix="gbbench-rebuild-") as tmp:
        return bench_store("SQLite", {"GB_DATA_DIR": str(Path(tmp) / "data")}, args)


def bench_postgres(args: argparse.Namespace) -> RebuildResult:
    with tempfile.TemporaryDirectory(prefix="gbbench-rebuild-") as tmp, fresh_database() as url:
        env = {"GB_DATA_DIR": str(Path(tmp) / "data"), "GB_DATABASE_URL": url}
        return bench_store("PostgreSQL", env, args)


# --- reporting ---------------------------------------------------------------------------


def table(results: Sequence[RebuildResult]) -> Table:
    out = Table(title="rebuild (tasks projection) vs reading the same log, events/s")
    out.add_column("store", justify="left")
    for column in (
        "events",
        "raw read ev/s",
        "read+decode ev/s",
        "rebuild ev/s",
        "rebuild/raw",
        "rebuild/decode",
        "rebuild s",
    ):
        out.add_column(column, justify="right")
    for r in results:
        out.add_row(
            r.store,
            f"{r.events:,}",
            f"{r.rate(r.raw_s):,.0f}",
            f"{r.rate(r.decode_s):,.0f}",
            f"{r.rate(r.rebuild_s):,.0f}",
            ratio(r.rate(r.rebuild_s), r.rate(r.raw_s)),
            ratio(r.rate(r.rebuild_s), r.rate(r.decode_s)),
            f"{r.rebuild_s:.2f}",
        )
    return out


def write_json(path: Path, args: argparse.Namespace, results: Sequence[RebuildResult]) -> None:
    figures = [
        {
            **asdict(r),
            "raw_eps": r.rate(r.raw_s),
            "decode_eps": r.rate(r.decode_s),
            "rebuild_eps": r.rate(r.rebuild_s),
        }
        for r in results
    ]
    document = {
        "machine": machine(),
        "params": {"tasks": args.tasks, "rounds": args.rounds, "batch": READ_BATCH},
        "results": figures,
    }
    path.write_text(json.dumps(describe_json(document), indent=2) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.rebuild",
        description="Rebuild throughput (events/s) vs raw notification-log reads.",
    )
    parser.add_argument(
        "--tasks",
        type=at_least(int, 0, strict=True),
        default=10_000,
        help="tasks to write, two events each (default 10000 = 20000 events)",
    )
    parser.add_argument(
        "--rounds",
        type=at_least(int, 0, strict=True),
        default=3,
        help="timed rounds of raw read, read+decode, rebuild; medians reported (default 3)",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip PostgreSQL even when it is available"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write JSON")
    return parser.parse_args(argv)


def run_all(args: argparse.Namespace, console: Console) -> list[RebuildResult]:
    results = []
    console.print(f"SQLite: writing {args.tasks:,} tasks ({2 * args.tasks:,} events) ...")
    results.append(bench_sqlite(args))
    why = "--no-postgres given" if args.no_postgres else postgres_unavailable()
    if why:
        console.print(f"PostgreSQL: skipped: {why}", markup=False)
        return results
    console.print(f"PostgreSQL: writing {args.tasks:,} tasks ({2 * args.tasks:,} events) ...")
    results.append(bench_postgres(args))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = make_console()
    print_machine(console)
    console.print(
        f"params: {args.tasks:,} tasks, {args.rounds} round(s), batches of {READ_BATCH}",
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
    for r in results:
        console.print(
            f"{r.store}: log written in {r.generate_s:.1f} s "
            f"({r.events / r.generate_s:,.0f} events/s); rebuild applied {r.applied:,} events",
            markup=False,
        )
    console.print(table(results))
    if args.json:
        write_json(args.json, args, results)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
