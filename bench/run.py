"""HTTP benchmark: gbserver against a bare Litestar baseline, on the same machine and client.

Run from the repository root with the project's venv:

    .venv/bin/python -m bench.run        # 8 clients; 1 s warm-up + 5 s per workload, ~30 s
    .venv/bin/python bench/run.py --concurrency 16 --duration 10 --json bench.json

What it does:

1. Starts a real `gbserver serve` (python -m infra.cli) on a free loopback port with a fresh
   SQLite data dir in a temp directory and a random admin token; waits for GET /api/health == 200.
2. Drives two workloads with N threads, each with its own httpx.Client, for a fixed duration
   after a warm-up: task creates (POST /api/tasks, expects 201) then list reads
   (GET /api/tasks?limit=50, so reads run over the tasks the create phase wrote).
3. Does the same against bench/baseline_app.py (a two-route Litestar app with fixed bodies, served
   by uvicorn), which shows what framework + server + this client reach without gbserver's work.
4. Prints one table: req/s (2xx responses only), the gbserver/baseline ratio, p50/p99 latency;
   non-2xx answers and transport errors are counted separately. --json PATH writes the figures.

The load generator shares the machine (and its own GIL) with the server under test, so the
absolute numbers are only comparable between runs on the same machine with the same parameters;
the baseline column is there to make that comparison meaningful. Both servers are stopped and the
temp dir removed on exit, including on Ctrl-C.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0

Send = Callable[[httpx.Client, int], httpx.Response]


@dataclass(frozen=True)
class Workload:
    name: str
    send: Send


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    headers: dict[str, str]
    stores_tasks: bool


@dataclass(frozen=True)
class Running:
    """A started server process."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def ensure_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode} during the run:\n"
                f"{tail(self.log_path)}"
            )


@dataclass
class Tally:
    """One client thread's observations."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Result:
    done: int
    errors: dict[str, int]
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


# --- workloads ---------------------------------------------------------------------------------


def _create_task(client: httpx.Client, n: int) -> httpx.Response:
    body = {"title": f"bench task {n}", "priority": "high", "due_date": "2030-01-01T00:00:00Z"}
    return client.post("/api/tasks", json=body)


def _list_tasks(client: httpx.Client, n: int) -> httpx.Response:
    return client.get("/api/tasks", params={"limit": 50})


WORKLOADS = (Workload("task creates", _create_task), Workload("list reads", _list_tasks))


# --- load generation ---------------------------------------------------------------------------


def _drive(
    url: str,
    headers: dict[str, str],
    send: Send,
    numbers: Iterator[int],
    start: threading.Barrier,
    stop: threading.Event,
    duration: float,
) -> Tally:
    """One client: waits for the others, then sends requests back to back until the deadline."""
    tally = Tally()
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        start.wait()
        deadline = time.perf_counter() + duration
        while not stop.is_set() and time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                response = send(client, next(numbers))
            except httpx.HTTPError as e:
                tally.errors[type(e).__name__] += 1
                continue
            if response.is_success:
                tally.latencies_ms.append((time.perf_counter() - began) * 1000)
            else:
                tally.errors[f"HTTP {response.status_code}"] += 1
    return tally


def measure(
    url: str, headers: dict[str, str], workload: Workload, concurrency: int, duration: float
) -> Result:
    """Runs one workload with `concurrency` clients for `duration` seconds."""
    start = threading.Barrier(concurrency + 1, timeout=REQUEST_TIMEOUT)
    stop = threading.Event()
    numbers = itertools.count(1)
    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client") as pool:
        try:
            futures = [
                pool.submit(_drive, url, headers, workload.send, numbers, start, stop, duration)
                for _ in range(concurrency)
            ]
            start.wait()
            began = time.perf_counter()
            tallies = [f.result() for f in futures]
            elapsed = time.perf_counter() - began
        finally:
            stop.set()
            start.abort()
    return summarise(tallies, elapsed)


def summarise(tallies: Sequence[Tally], seconds: float) -> Result:
    latencies = sorted(ms for t in tallies for ms in t.latencies_ms)
    errors: Counter[str] = Counter()
    for t in tallies:
        errors.update(t.errors)
    return Result(
        done=len(latencies),
        errors=dict(errors),
        seconds=seconds,
        rps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence; NaN when it is empty."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100), at least 1
    return ordered[int(rank) - 1]


# --- server processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without inherited GB_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GB_")}
    return {**env, **extra}


def gbserver(data_dir: Path, token: str, port: int) -> Server:
    return Server(
        name="gbserver",
        port=port,
        argv=[sys.executable, "-m", "infra.cli", "serve", "--host", HOST, "--port", str(port)],
        env=clean_env(
            {"GB_DATA_DIR": str(data_dir), "GB_ADMIN_TOKEN": token, "GB_LOG_LEVEL": "warning"}
        ),
        ready_path="/api/health",
        headers={"Authorization": f"Bearer {token}"},
        stores_tasks=True,
    )


def baseline(port: int) -> Server:
    return Server(
        name="baseline",
        port=port,
        argv=[
            sys.executable,
            "-m",
            "uvicorn",
            "bench.baseline_app:app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=clean_env({}),
        ready_path="/api/tasks",
        headers={},
        stores_tasks=False,
    )


@contextmanager
def running(server: Server, log_path: Path) -> Iterator[Running]:
    """Starts the server, yields it once ready, and always stops it."""
    url = f"http://{HOST}:{server.port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            server.argv, cwd=ROOT, env=server.env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(proc, url + server.ready_path, server.headers, log_path)
            yield Running(server.name, url, proc, log_path)
        finally:
            stop_process(proc)


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, headers: dict[str, str], log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            if httpx.get(url, headers=headers, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT:.0f}s:\n{tail(log_path)}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


# --- running and reporting ---------------------------------------------------------------------


def bench_server(
    server: Server, log_path: Path, args: argparse.Namespace, console: Console
) -> dict[str, Result]:
    """Warms up and measures every workload against one server, in order."""
    results: dict[str, Result] = {}
    with running(server, log_path) as live:
        for workload in WORKLOADS:
            console.print(f"{server.name}: {workload.name} ...")
            if args.warmup > 0:
                measure(live.url, server.headers, workload, args.concurrency, args.warmup)
                live.ensure_alive()
            results[workload.name] = measure(
                live.url, server.headers, workload, args.concurrency, args.duration
            )
            live.ensure_alive()
        if server.stores_tasks:
            total = task_total(live.url, server.headers)
            console.print(f"{server.name}: {total if total is not None else '?'} tasks stored")
    return results


def task_total(url: str, headers: dict[str, str]) -> int | None:
    try:
        response = httpx.get(f"{url}/api/tasks", params={"limit": 1}, headers=headers, timeout=5.0)
        return int(response.json()["pagination"]["total"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def table(results: dict[str, dict[str, Result]]) -> Table:
    out = Table(title="gbserver vs bare Litestar baseline")
    for column in ("workload", "gbserver req/s", "baseline req/s", "ratio"):
        out.add_column(column, justify="left" if column == "workload" else "right")
    for column in ("gbserver p50/p99 ms", "baseline p50/p99 ms", "errors gb/base"):
        out.add_column(column, justify="right")
    for workload in WORKLOADS:
        gb, base = results["gbserver"][workload.name], results["baseline"][workload.name]
        out.add_row(
            workload.name,
            f"{gb.rps:,.0f}",
            f"{base.rps:,.0f}",
            f"{gb.rps / base.rps:.3f}" if base.rps else "n/a",
            f"{gb.p50_ms:.1f} / {gb.p99_ms:.1f}",
            f"{base.p50_ms:.1f} / {base.p99_ms:.1f}",
            f"{sum(gb.errors.values())} / {sum(base.errors.values())}",
        )
    return out


def error_lines(results: dict[str, dict[str, Result]]) -> list[str]:
    """One line per server and workload that saw errors, e.g. `gbserver list reads: HTTP 500 x3`."""
    return [
        f"{server} {workload}: "
        + ", ".join(f"{kind} x{count}" for kind, count in sorted(result.errors.items()))
        for server, by_workload in results.items()
        for workload, result in by_workload.items()
        if result.errors
    ]


def write_json(path: Path, params: dict[str, Any], results: dict[str, dict[str, Result]]) -> None:
    figures = {
        server: {name: asdict(result) for name, result in by_workload.items()}
        for server, by_workload in results.items()
    }
    document = {"machine": machine(), "params": params, "results": figures}
    path.write_text(json.dumps(document, indent=2, allow_nan=False, default=str) + "\n")


def at_least(kind: Callable[[str], Any], minimum: float, *, strict: bool) -> Callable[[str], Any]:
    """An argparse type: `kind(raw)`, which must be > minimum (strict) or >= minimum."""

    def parse(raw: str) -> Any:
        value = kind(raw)
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.run", description="Benchmark gbserver against a bare Litestar baseline."
    )
    parser.add_argument(
        "--concurrency",
        type=at_least(int, 0, strict=True),
        default=8,
        help="client threads (default 8)",
    )
    parser.add_argument(
        "--duration",
        type=at_least(float, 0, strict=True),
        default=5.0,
        help="measured seconds per workload and server (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=at_least(float, 0, strict=False),
        default=1.0,
        help="unmeasured seconds before each workload (default 1, 0 to skip)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the figures as JSON to PATH",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = {"concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup}
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # keep the table on one line per row in logs and pipes
    host = machine()
    console.print(f"machine: {host['cpu_count']} CPUs, {host['platform']}, Python {host['python']}")
    console.print(
        f"params: {args.concurrency} concurrent clients; per workload and server "
        f"{args.warmup:g} s warm-up, then {args.duration:g} s measured",
        markup=False,
    )
    token = "gb_bench_" + secrets.token_urlsafe(32)
    results: dict[str, dict[str, Result]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="gbbench-") as tmp:
            servers: tuple[Callable[[int], Server], ...] = (
                partial(gbserver, Path(tmp) / "data", token),
                baseline,
            )
            for make_server in servers:
                server = make_server(free_port())  # picked just before use
                log_path = Path(tmp) / f"{server.name}.log"
                results[server.name] = bench_server(server, log_path, args, console)
    except KeyboardInterrupt:
        console.print("interrupted; servers stopped")
        return 130
    except RuntimeError as e:
        console.print(f"bench failed: {e}", markup=False)
        return 1
    console.print(table(results))
    for line in error_lines(results):
        console.print(f"errors: {line}", markup=False)
    if args.json:
        write_json(args.json, params, results)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
