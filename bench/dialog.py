"""Dialog benchmark: messages/s through a 5-turn BASIC dialog, embedded profile (SQLite).

    .venv/bin/python -m bench.dialog                     # 8 clients; 1 s warm-up + 10 s, ~30 s
    .venv/bin/python -m bench.dialog --concurrency 16 --duration 20

What it does:

1. Starts a real `gbserver serve` (as bench.run does: fresh SQLite data dir in a temp directory,
   random GB_ADMIN_TOKEN), creates the dialog `start` for bot `bench` over HTTP
   (POST /api/designer/dialogs) and deploys it (POST /api/designer/dialogs/<id>/deploy).
2. N client threads, each with its own httpx.Client, run conversations back to back for a fixed
   duration after a warm-up: POST /api/sessions, then the 5 messages of the dialog; the last
   reply must contain "Thanks Ana". A conversation still open at the deadline is abandoned
   (its finished messages count, the conversation does not).
3. Measures bench.run's "task creates" workload against bench/baseline_app.py (bare Litestar,
   fixed body) at the same concurrency, and prints both side by side with the ratio.

Latencies are per message (the session create is timed apart); messages/s counts 2xx replies.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from bench import run
from bench.common import Stats, make_console, print_machine, ratio, stats

BOT_ID = "bench"
SOURCE = """\
TALK "Hi! What is your name?"
HEAR name
TALK "Hello " + name + ". How old are you?"
HEAR age AS INTEGER
TALK "Which city?"
HEAR city AS "Lisbon", "Porto", "Faro"
TALK "Email?"
HEAR email AS EMAIL
TALK "Thanks " + name + " (" + age + ") from " + city + ", we will write to " + email
"""
ANSWERS = ("hi", "Ana", "42", "2", "ana@example.com")
EXPECTED = "Thanks Ana"


@dataclass
class Tally:
    """One client thread's observations."""

    message_ms: list[float] = field(default_factory=list)
    open_ms: list[float] = field(default_factory=list)
    conversations: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class DialogResult:
    seconds: float
    messages: int
    conversations: int
    msg_per_s: float
    conv_per_s: float
    message: Stats
    open: Stats
    errors: dict[str, int]


# --- setup -------------------------------------------------------------------------------


def deploy_dialog(url: str, headers: dict[str, str]) -> str:
    """Creates and deploys the dialog; returns its id."""
    with httpx.Client(base_url=url, headers=headers, timeout=run.REQUEST_TIMEOUT) as client:
        created = client.post(
            "/api/designer/dialogs", json={"name": "start", "bot_id": BOT_ID, "content": SOURCE}
        )
        if created.status_code != 201:
            raise RuntimeError(f"create dialog: HTTP {created.status_code}: {created.text}")
        dialog_id = str(created.json()["id"])
        deployed = client.post(f"/api/designer/dialogs/{dialog_id}/deploy")
        if deployed.status_code != 201:
            raise RuntimeError(f"deploy dialog: HTTP {deployed.status_code}: {deployed.text}")
    return dialog_id


def reply_text(body: dict[str, Any]) -> str:
    """The reply's content and parts (one per TALK), as one string."""
    return " ".join([str(body.get("content", "")), *map(str, body.get("parts") or [])])


# --- load --------------------------------------------------------------------------------


def _converse(client: httpx.Client, tally: Tally, deadline: float, stop: threading.Event) -> None:
    """One conversation; returns early at the deadline or on the first failure."""
    began = time.perf_counter()
    try:
        opened = client.post("/api/sessions", json={"bot_id": BOT_ID})
    except httpx.HTTPError as e:
        tally.errors[f"open {type(e).__name__}"] += 1
        return
    if opened.status_code != 201:
        tally.errors[f"open HTTP {opened.status_code}"] += 1
        return
    tally.open_ms.append((time.perf_counter() - began) * 1000)
    sid = opened.json()["id"]
    last = ""
    for answer in ANSWERS:
        if stop.is_set() or time.perf_counter() >= deadline:
            return
        began = time.perf_counter()
        try:
            response = client.post(f"/api/sessions/{sid}/messages", json={"content": answer})
        except httpx.HTTPError as e:
            tally.errors[f"message {type(e).__name__}"] += 1
            return
        if response.status_code != 200:
            tally.errors[f"message HTTP {response.status_code}"] += 1
            return
        tally.message_ms.append((time.perf_counter() - began) * 1000)
        last = reply_text(response.json())
    if EXPECTED in last:
        tally.conversations += 1
    else:
        tally.errors["wrong final reply"] += 1


def _drive(
    url: str,
    headers: dict[str, str],
    start: threading.Barrier,
    stop: threading.Event,
    duration: float,
) -> Tally:
    tally = Tally()
    with httpx.Client(base_url=url, headers=headers, timeout=run.REQUEST_TIMEOUT) as client:
        start.wait()
        deadline = time.perf_counter() + duration
        while not stop.is_set() and time.perf_counter() < deadline:
            _converse(client, tally, deadline, stop)
    return tally


def measure_dialog(
    url: str, headers: dict[str, str], concurrency: int, duration: float
) -> DialogResult:
    start = threading.Barrier(concurrency + 1, timeout=run.REQUEST_TIMEOUT)
    stop = threading.Event()
    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench-dialog") as pool:
        try:
            futures = [
                pool.submit(_drive, url, headers, start, stop, duration) for _ in range(concurrency)
            ]
            start.wait()
            began = time.perf_counter()
            tallies = [f.result() for f in futures]
            seconds = time.perf_counter() - began
        finally:
            stop.set()
            start.abort()
    errors: Counter[str] = Counter()
    for t in tallies:
        errors.update(t.errors)
    messages = sum(len(t.message_ms) for t in tallies)
    conversations = sum(t.conversations for t in tallies)
    return DialogResult(
        seconds=seconds,
        messages=messages,
        conversations=conversations,
        msg_per_s=messages / seconds if seconds > 0 else 0.0,
        conv_per_s=conversations / seconds if seconds > 0 else 0.0,
        message=stats([ms for t in tallies for ms in t.message_ms]),
        open=stats([ms for t in tallies for ms in t.open_ms]),
        errors=dict(errors),
    )


# --- running and reporting ---------------------------------------------------------------


def bench_gbserver(tmp: Path, token: str, args: argparse.Namespace) -> DialogResult:
    server = run.gbserver(tmp / "data", token, run.free_port())
    with run.running(server, tmp / "gbserver.log") as live:
        deploy_dialog(live.url, server.headers)
        if args.warmup > 0:
            measure_dialog(live.url, server.headers, args.concurrency, args.warmup)
            live.ensure_alive()
        result = measure_dialog(live.url, server.headers, args.concurrency, args.duration)
        live.ensure_alive()
    return result


def bench_baseline(tmp: Path, args: argparse.Namespace) -> run.Result:
    server = run.baseline(run.free_port())
    workload = run.WORKLOADS[0]  # "task creates": POST /api/tasks with a fixed JSON body
    with run.running(server, tmp / "baseline.log") as live:
        if args.warmup > 0:
            run.measure(live.url, server.headers, workload, args.concurrency, args.warmup)
        result = run.measure(live.url, server.headers, workload, args.concurrency, args.duration)
        live.ensure_alive()
    return result


def table(gb: DialogResult, base: run.Result) -> Table:
    out = Table(title="gbserver 5-turn dialog (embedded) vs bare Litestar POST /api/tasks")
    out.add_column("workload")
    for column in ("gbserver msg/s", "baseline req/s", "ratio"):
        out.add_column(column, justify="right")
    for column in ("gbserver p50/p99 ms", "baseline p50/p99 ms", "errors gb/base"):
        out.add_column(column, justify="right")
    out.add_row(
        "dialog message",
        f"{gb.msg_per_s:,.0f}",
        f"{base.rps:,.0f}",
        ratio(gb.msg_per_s, base.rps),
        f"{gb.message.p50:.1f} / {gb.message.p99:.1f}",
        f"{base.p50_ms:.1f} / {base.p99_ms:.1f}",
        f"{sum(gb.errors.values())} / {sum(base.errors.values())}",
    )
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.dialog",
        description="Messages/s through a 5-turn dialog on gbserver vs a bare Litestar baseline.",
    )
    parser.add_argument(
        "--concurrency",
        type=run.at_least(int, 0, strict=True),
        default=8,
        help="client threads (default 8)",
    )
    parser.add_argument(
        "--duration",
        type=run.at_least(float, 0, strict=True),
        default=10.0,
        help="measured seconds per server (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=run.at_least(float, 0, strict=False),
        default=1.0,
        help="unmeasured seconds before each measurement (default 1, 0 to skip)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = make_console()
    print_machine(console)
    console.print(
        f"params: {args.concurrency} concurrent clients; per server {args.warmup:g} s warm-up, "
        f"then {args.duration:g} s measured; {len(ANSWERS)} messages per conversation",
        markup=False,
    )
    token = "gb_bench_" + secrets.token_urlsafe(32)
    try:
        with tempfile.TemporaryDirectory(prefix="gbbench-dialog-") as tmp_name:
            tmp = Path(tmp_name)
            console.print("gbserver: 5-turn dialog ...")
            gb = bench_gbserver(tmp, token, args)
            console.print("baseline: POST /api/tasks ...")
            base = bench_baseline(tmp, args)
    except KeyboardInterrupt:
        console.print("interrupted; servers stopped")
        return 130
    except RuntimeError as e:
        console.print(f"bench failed: {e}", markup=False)
        return 1
    console.print(table(gb, base))
    console.print(
        f"gbserver: {gb.conversations:,} conversations completed in {gb.seconds:.1f} s "
        f"= {gb.conv_per_s:,.1f} conversations/s; {gb.messages:,} messages; "
        f"session create p50/p99 {gb.open.p50:.1f} / {gb.open.p99:.1f} ms",
        markup=False,
    )
    for name, errors in (("gbserver", gb.errors), ("baseline", base.errors)):
        if errors:
            listed = ", ".join(f"{kind} x{count}" for kind, count in sorted(errors.items()))
            console.print(f"errors: {name}: {listed}", markup=False)
    if gb.conversations == 0:
        console.print("bench failed: no conversation completed", markup=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
