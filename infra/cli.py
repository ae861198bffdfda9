"""The `gbserver` command: serve, rebuild, events, token, drive gc."""

from __future__ import annotations

import argparse
import errno
import logging
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import msgspec

from commands.ports import StoreUnavailable
from commands.validation import explain, summary
from infra.config import DOCUMENTED, ConfigError, Settings
from infra.datadir import DataDirBusy, DataDirLock, workers_lock
from infra.logs import configure as configure_logging


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28, width=_width())


class _Parser(argparse.ArgumentParser):
    """Help on stdout, exit 0; an error is one line on stderr, exit 2, and no help text."""

    # An epilog that costs imports to write (the projections' names): built when shown.
    epilog_from: Callable[[], str] | None = None

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog, self.epilog_from = self.epilog_from(), None
        return super().format_help()


def _width() -> int:
    return max(60, min(100, shutil.get_terminal_size().columns) - 2)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {text!r}")
    return int(text)


NBSP = "\N{NO-BREAK SPACE}"


def _settings_epilog() -> str:
    """Every GB_* variable with its default and meaning (infra.config.DOCUMENTED)."""
    indent = 2 + max(len(d.name) for d in DOCUMENTED) + 2
    lines = ["settings (environment variables, read by every command):"]
    for d in DOCUMENTED:
        default = f"[default: {d.default or 'empty'}]".replace(" ", NBSP)  # kept on one line
        lines += textwrap.wrap(
            f"{d.meaning} {default}",
            width=_width(),
            initial_indent=f"  {d.name:<{indent - 2}}",
            subsequent_indent=" " * indent,
            break_on_hyphens=False,
        )
    return "\n".join(lines).replace(NBSP, " ")


def _projections_epilog() -> str:
    from infra.bootstrap import PROJECTIONS  # the areas' projections; no store is opened

    names = ", ".join(p.name for p in PROJECTIONS)
    return (
        f"projections: {names}\n\n"
        "An online rebuild: each projection is replayed into a shadow store, then\n"
        "swapped in: safe beside a running server (it serves the old tables meanwhile)."
    )


def _parser() -> tuple[_Parser, dict[str, _Parser]]:
    """The command line, and each command's own parser by name."""
    defaults = Settings()
    parser = _Parser(
        prog="gbserver",
        usage="gbserver <command> [options]",
        description="An event-sourced CQRS server for the General Bots REST API.",
        epilog=(
            "`gbserver <command> --help` shows a command's options;\n"
            "`gbserver serve --help` also lists every GB_* setting."
        ),
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    commands: dict[str, _Parser] = {}

    def command(name: str, summary: str, description: str = "", **kw: Any) -> _Parser:
        found: _Parser = sub.add_parser(
            name,
            prog=f"gbserver {name}",
            help=summary,
            description=description or summary[:1].upper() + summary[1:] + ".",
            formatter_class=_Formatter,
            **kw,
        )
        commands[name] = found
        return found

    serve = command(
        "serve",
        f"serve the REST API (on http://{defaults.host}:{defaults.port} by default)",
        "Serve the REST API and, unless --no-workers, the workers that keep the read\n"
        "models up to date. On the embedded profile (GB_DATABASE_URL empty) the server\n"
        "locks GB_DATA_DIR: one server at a time on a data directory.",
        epilog=_settings_epilog(),
    )
    serve.add_argument(
        "--host",
        default=None,
        help=f"address to listen on [GB_HOST; default: {defaults.host}]",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port to listen on [GB_PORT; default: {defaults.port}]",
    )
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="leave the relay and projectors to `gbserver relay` / `gbserver project`"
        " processes [default: run them in the server]",
    )

    rebuild = command(
        "rebuild",
        "rebuild read models from the event log (safe beside a running server)",
        "Rebuild read models from the event log, online.",
    )
    rebuild.add_argument(
        "projections",
        nargs="*",
        metavar="PROJECTION",
        help="a projection to rebuild [default: all of them]",
    )
    rebuild.epilog_from = _projections_epilog

    events = command("events", "print the event log as JSON lines")
    events.add_argument(
        "--after", type=int, default=0, help="last notification id seen [default: 0, all]"
    )
    events.add_argument(
        "--limit", type=int, default=None, help="most events to print [default: no limit]"
    )
    events.add_argument(
        "--aggregate", default=None, help="only this aggregate's events [default: every one]"
    )

    token = command("token", "manage API tokens (`gbserver token create --user EMAIL`)")
    token_sub = token.add_subparsers(dest="token_command", title="commands", metavar="<command>")
    create = token_sub.add_parser(
        "create",
        prog="gbserver token create",
        help="issue a token and print it",
        description="Issue a token and print it (once: only its hash is stored).",
        formatter_class=_Formatter,
    )
    create.add_argument("--user", required=True, help="the user's email")
    create.add_argument("--role", choices=("admin", "user"), default="user", help="[default: user]")

    drive = command("drive", "manage drive content (`gbserver drive gc`)")
    drive_sub = drive.add_subparsers(dest="drive_command", title="commands", metavar="<command>")
    gc = drive_sub.add_parser(
        "gc",
        prog="gbserver drive gc",
        help="remove stored content no file or mail names any more",
        description="Remove blobs (drive files, mail parts) that no read model names and that\n"
        "were stored more than --grace seconds ago, and uploads abandoned that long ago.\n"
        "Safe beside a running server: it waits for the read models to be current,\n"
        "and the grace period keeps uploads in flight.",
        formatter_class=_Formatter,
    )
    gc.add_argument(
        "--grace",
        type=_seconds,
        default=GC_GRACE,
        metavar="SECONDS",
        help=f"age a blob must have to be removed [default: {GC_GRACE:g}]",
    )

    command(
        "relay",
        "publish the event log to Kafka (scaled profile; needs GB_KAFKA_BOOTSTRAP)",
    )
    project = command(
        "project",
        "keep the read models apart from `serve --no-workers` (with Kafka: a consumer group)",
    )
    project.add_argument(
        "--group", default=None, help="consumer group name [default: GB_KAFKA_GROUP]"
    )
    return parser, commands


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10**9:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (0 or more), got {text!r}")
    return value


GC_GRACE = 3600.0  # seconds: uploads in flight are never older than this
GC_WAIT = 30.0  # seconds `drive gc` waits for the read models to be current


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `gbserver` alone: what it can do
        parser.print_help()
        return 0
    if args.command == "token" and args.token_command is None:
        commands["token"].print_help()
        return 0
    if args.command == "drive" and args.drive_command is None:
        commands["drive"].print_help()
        return 0
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"gbserver: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "debug":
        # kafka-python logs every failed reconnect at ERROR; our relay and projector report
        # an outage once, and its end.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        if args.command == "serve":
            return _serve(
                settings,
                settings.host if args.host is None else args.host,
                settings.port if args.port is None else args.port,
                workers=not args.no_workers,
            )
        if args.command == "relay":
            return _run_workers(settings, relay=True, projectors=False)
        if args.command == "project":
            return _run_workers(settings, relay=False, projectors=True, group=args.group)
        if args.command == "rebuild":
            return _rebuild(settings, args.projections)
        if args.command == "events":
            return _events(settings, args.after, args.limit, args.aggregate)
        if args.command == "drive":
            return _drive_gc(settings, args.grace)
        return _token_create(settings, args.user, args.role)
    except StoreUnavailable as e:
        print(f"gbserver: storage is unavailable: {e}", file=sys.stderr)
        return 1


def _serve(settings: Settings, host: str, port: int, *, workers: bool) -> int:
    """In this order, so that nothing claims to have started before the server can:
    the data directory's lock, the listening socket, the stores, the metrics listener, the
    admin token, the workers, then serving."""
    import uvicorn
    from prometheus_client import start_http_server

    from api.app import asgi
    from commands.admin import AdminCommands
    from infra.bootstrap import Services
    from infra.smtp_inbound import ListenerUnavailable

    log = logging.getLogger("gbserver")
    locks: list[DataDirLock] = []
    if not settings.uses_postgres:  # the embedded stores live in the data directory
        locks.append(DataDirLock(settings.data_dir))
        if workers and not settings.uses_kafka:
            locks.append(workers_lock(settings.data_dir, "gbserver serve"))
        try:
            for lock in locks:
                lock.acquire()
        except DataDirBusy as e:
            _release(locks)
            print(f"gbserver: {e}", file=sys.stderr)
            return 1
    try:
        sockets = listen(host, port)
    except CannotListen as e:
        print(f"gbserver: {e}", file=sys.stderr)
        return 1
    try:
        services = Services.open(settings)
        try:
            on_shutdown = [services.close]
            on_shutdown.append(lambda: _release(locks))  # after the stores have closed
            metrics = settings.metrics_address()
            if metrics is not None:
                # Prometheus' own HTTP server, without auth: GB_METRICS_LISTEN is meant for a
                # network only the scraper reaches (the API's /metrics stays admin-only).
                try:
                    metrics_server, _ = start_http_server(
                        metrics[1], metrics[0], registry=services.metrics.registry
                    )
                except OSError as e:
                    print(
                        f"gbserver: GB_METRICS_LISTEN {settings.metrics_listen}: {e}",
                        file=sys.stderr,
                    )
                    return 2
                on_shutdown.insert(0, metrics_server.server_close)
                on_shutdown.insert(0, metrics_server.shutdown)
                log.info("metrics on http://%s:%s/metrics", metrics_server.server_name, metrics[1])
            if not settings.admin_token:
                secret = AdminCommands(services.events).bootstrap_admin()
                if secret:
                    print(f"Admin token (shown once, keep it): {secret}", flush=True)
            try:
                services.start_listeners()
            except ListenerUnavailable as e:
                print(f"gbserver: {e}", file=sys.stderr)
                return 1
            if workers:
                services.start_workers()
            # Closed by the app's shutdown hook: uvicorn re-raises SIGTERM once it has stopped,
            # which ends the process before a `finally` here could run.
            config = uvicorn.Config(
                asgi(services.wiring(), on_shutdown=on_shutdown),
                host=host,
                port=port,
                log_level=settings.log_level,
                log_config=None,  # uvicorn's error log goes through our handler (infra.logs)
                access_log=False,  # api.observability logs one line per request instead
                timeout_graceful_shutdown=5,
                server_header=False,
            )
            url = f"http://{_address(host, sockets[0].getsockname()[1])}"

            class Server(uvicorn.Server):
                async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                    await super().startup(sockets)
                    if self.started:  # uvicorn says where only when it binds itself
                        log.info("serving on %s (Ctrl+C to stop)", url)

            Server(config).run(sockets=sockets)
        finally:
            services.close()
    finally:
        for sock in sockets:
            sock.close()
        _release(locks)
    return 0


def _release(locks: Sequence[DataDirLock]) -> None:
    for lock in reversed(locks):
        lock.release()


class CannotListen(Exception):
    """The address to serve on cannot be had (in use, not this host's, not allowed)."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"


# uvicorn's default backlog (uvicorn.Config.backlog)
BACKLOG = 2048


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on host:port (each address the host name resolves to), for uvicorn
    to serve on: taken before the stores open, so that a busy port is a one-line error
    before anything claims to have started."""
    where = _address(host, port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise CannotListen(
            f"cannot listen on {where}: {_reason(e)} (set --host or GB_HOST)"
        ) from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: [::] leaves 0.0.0.0 to its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # At once: two servers may both bind a SO_REUSEADDR socket; only one can listen.
            sock.listen(BACKLOG)
    except OSError as e:
        for sock in sockets:
            sock.close()
        fix = "--host or GB_HOST" if e.errno == errno.EADDRNOTAVAIL else "--port or GB_PORT"
        raise CannotListen(f"cannot listen on {where}: {_reason(e)} (set {fix})") from None
    return sockets


def _reason(e: OSError) -> str:
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def _run_workers(
    settings: Settings, *, relay: bool, projectors: bool, group: str | None = None
) -> int:
    import signal
    import threading

    from infra.bootstrap import Services

    if relay and not settings.uses_kafka:
        print("gbserver: relay needs GB_KAFKA_BOOTSTRAP (host:port)", file=sys.stderr)
        return 2
    lock = None
    if projectors and not settings.uses_postgres and not settings.uses_kafka:
        lock = workers_lock(settings.data_dir, "gbserver project")
        try:
            lock.acquire()
        except DataDirBusy as e:
            print(f"gbserver: {e}", file=sys.stderr)
            return 1
    services = Services.open(settings)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        services.start_workers(relay=relay, projectors=projectors, group=group)
        logging.getLogger("gbserver").info(
            "running %s", ", ".join(w.name for w in services.workers)
        )
        stopping.wait()
    finally:
        services.close()
        if lock is not None:
            lock.release()
    return 0


def _rebuild(settings: Settings, names: Sequence[str]) -> int:
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from infra.bootstrap import PROJECTIONS, Services
    from projections.operations import RebuildRunning

    known = [p.name for p in PROJECTIONS]
    unknown = sorted(set(names) - set(known))
    if unknown:  # before opening anything
        print(
            f"gbserver: unknown projection {', '.join(unknown)} (known: {', '.join(known)})",
            file=sys.stderr,
        )
        return 2
    services = Services.open(settings)
    ops = services.operations()
    try:
        chosen = [services.projections[n] for n in names] or list(services.projections.values())
        with Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            transient=False,
        ) as progress:
            for projection in chosen:
                bar = progress.add_task(projection.name, total=None)
                started = time.perf_counter()

                def advance(done: int, total: int, bar: TaskID = bar) -> None:
                    progress.update(bar, completed=done, total=total)

                try:
                    applied = ops.rebuild(projection.name, advance)
                except RebuildRunning as e:
                    print(f"gbserver: {e}", file=sys.stderr)
                    return 1
                progress.update(bar, description=projection.name)
                progress.console.print(
                    f"{projection.name}: {applied} events applied in "
                    f"{time.perf_counter() - started:.2f}s"
                )
    finally:
        services.close()
    return 0


def _events(settings: Settings, after: int, limit: int | None, aggregate: str | None) -> int:
    from infra.bootstrap import Services
    from infra.monitoring import EventLog

    services = Services.open(settings)
    event_log = EventLog(services.events)
    out = sys.stdout.buffer
    printed = 0
    try:
        while limit is None or printed < limit:
            page = event_log.page(after, 1000)
            if not page:
                break
            after = page[-1]["id"]
            for record in page:
                if aggregate is not None and record["aggregate_id"] != aggregate:
                    continue
                out.write(msgspec.json.encode(record) + b"\n")
                printed += 1
                if limit is not None and printed >= limit:
                    break
        out.flush()
    finally:
        services.close()
    return 0


def _drive_gc(settings: Settings, grace: float) -> int:
    """Removes blobs no read model names (each projection's `blob_references(sql)`), once
    those read models hold the whole log: a lagging or rebuilt one would name too few."""
    from commands.drive import collect_garbage
    from infra.bootstrap import Services

    services = Services.open(settings)
    try:
        holders = [p for p in services.projections.values() if hasattr(p, "blob_references")]
        ops = services.operations()
        deadline = time.monotonic() + GC_WAIT
        while True:
            behind = [
                f"{s.name} ({s.state}, {s.lag_events} events behind)"
                for s in (ops.status(p.name) for p in holders)
                if s.state != "running" or s.lag_events
            ]
            if not behind:
                break
            if time.monotonic() > deadline:
                print(
                    f"gbserver: the read models naming stored content are not current:"
                    f" {', '.join(behind)}; run the server (or `gbserver project`) and retry",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)

        def referenced() -> set[str]:
            found: set[str] = set()
            with services.read.read() as sql:
                for projection in holders:
                    found.update(projection.blob_references(sql))
            return found

        result = collect_garbage(services.blobs, referenced, grace)
    finally:
        services.close()
    print(
        f"removed {result.removed} unreferenced blobs and {result.partial} abandoned uploads;"
        f" kept {result.kept} blobs"
    )
    return 0


def _token_create(settings: Settings, user: str, role: str) -> int:
    from commands.admin import AdminCommands, IssueToken
    from domain.common import Actor
    from infra.bootstrap import Services

    fields = {"user": user, "role": role}
    problems = explain(IssueToken, fields)  # the API's sentences, for the same command
    if problems:
        print(f"gbserver token create: {summary(problems)}", file=sys.stderr)
        return 2
    cmd = msgspec.convert(fields, IssueToken)
    services = Services.open(settings)
    try:
        _, secret, _ = AdminCommands(services.events).issue(Actor("cli", is_admin=True), cmd)
    finally:
        services.close()
    print(secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
