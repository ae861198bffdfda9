"""The `gbserver` command: serve, rebuild, events, token."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import msgspec

from commands.ports import StoreUnavailable
from infra.config import ConfigError, Settings
from infra.logs import configure as configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gbserver", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the REST API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="leave the relay and projectors to `gbserver relay` / `gbserver project` processes",
    )

    sub.add_parser("relay", help="publish the event log to Kafka (GB_KAFKA_BOOTSTRAP)")
    project = sub.add_parser("project", help="run projector workers (a Kafka consumer group)")
    project.add_argument(
        "--group", default=None, help="consumer group name (default: GB_KAFKA_GROUP)"
    )

    rebuild = sub.add_parser("rebuild", help="rebuild read models from the event log")
    rebuild.add_argument("projections", nargs="*", metavar="PROJECTION")

    events = sub.add_parser("events", help="print the event log as JSON lines")
    events.add_argument("--after", type=int, default=0, help="last notification id seen")
    events.add_argument("--limit", type=int, default=None, help="most events to print")
    events.add_argument("--aggregate", default=None, help="only this aggregate's events")

    token = sub.add_parser("token", help="manage API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="issue a token and print it")
    create.add_argument("--user", required=True, help="the user's email")
    create.add_argument("--role", choices=("admin", "user"), default="user")

    args = parser.parse_args(argv)
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
            return _serve(settings, args.host, args.port, workers=not args.no_workers)
        if args.command == "relay":
            return _run_workers(settings, relay=True, projectors=False)
        if args.command == "project":
            return _run_workers(settings, relay=False, projectors=True, group=args.group)
        if args.command == "rebuild":
            return _rebuild(settings, args.projections)
        if args.command == "events":
            return _events(settings, args.after, args.limit, args.aggregate)
        return _token_create(settings, args.user, args.role)
    except StoreUnavailable as e:
        print(f"gbserver: storage is unavailable: {e}", file=sys.stderr)
        return 1


def _serve(settings: Settings, host: str, port: int, *, workers: bool) -> int:
    import uvicorn
    from prometheus_client import start_http_server

    from api.app import asgi
    from commands.admin import AdminCommands
    from infra.bootstrap import Services

    services = Services.open(settings)
    try:
        if not settings.admin_token:
            secret = AdminCommands(services.events).bootstrap_admin()
            if secret:
                print(f"Admin token (shown once, keep it): {secret}", flush=True)
        if workers:
            services.start_workers()
        on_shutdown = [services.close]
        listen = settings.metrics_address()
        if listen is not None:
            # Prometheus' own HTTP server, without auth: GB_METRICS_LISTEN is meant for a
            # network only the scraper reaches (the API's /metrics stays admin-only).
            try:
                metrics_server, _ = start_http_server(
                    listen[1], listen[0], registry=services.metrics.registry
                )
            except OSError as e:
                print(
                    f"gbserver: GB_METRICS_LISTEN {settings.metrics_listen}: {e}", file=sys.stderr
                )
                return 2
            on_shutdown.insert(0, metrics_server.server_close)
            on_shutdown.insert(0, metrics_server.shutdown)
            logging.getLogger("gbserver").info(
                "metrics on http://%s:%s/metrics", metrics_server.server_name, listen[1]
            )
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
        uvicorn.Server(config).run()
    finally:
        services.close()
    return 0


def _run_workers(
    settings: Settings, *, relay: bool, projectors: bool, group: str | None = None
) -> int:
    import signal
    import threading

    from infra.bootstrap import Services

    if relay and not settings.uses_kafka:
        print("gbserver: relay needs GB_KAFKA_BOOTSTRAP (host:port)", file=sys.stderr)
        return 2
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
    return 0


def _rebuild(settings: Settings, names: Sequence[str]) -> int:
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from infra.bootstrap import Services
    from projections.operations import RebuildRunning

    services = Services.open(settings)
    ops = services.operations()
    try:
        unknown = sorted(set(names) - set(services.projections))
        if unknown:
            known = ", ".join(sorted(services.projections))
            print(
                f"gbserver: unknown projection {', '.join(unknown)} (known: {known})",
                file=sys.stderr,
            )
            return 2
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


def _token_create(settings: Settings, user: str, role: str) -> int:
    from commands.admin import AdminCommands, IssueToken
    from domain.common import Actor
    from infra.bootstrap import Services

    try:
        cmd = msgspec.convert({"user": user, "role": role}, IssueToken)
    except msgspec.ValidationError as e:
        print(f"gbserver: {e}", file=sys.stderr)
        return 2
    services = Services.open(settings)
    try:
        _, secret, _ = AdminCommands(services.events).issue(Actor("cli", is_admin=True), cmd)
    finally:
        services.close()
    print(secret)
    return 0


if __name__ == "__main__":
    sys.exit(main())
