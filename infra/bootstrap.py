"""The composition root: picks adapters from Settings and wires every layer together."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.auth import Authenticator
from api.deps import Deps, InFlight
from commands.admin import AdminCommands
from commands.paper import PaperCommands
from commands.tasks import TaskCommands
from domain.common import rfc3339
from infra.cache import TtlCache
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from infra.readstore import PostgresReadStore, SQLiteReadStore, open_read_store
from infra.runner import Consistency, LogSignal, Positions, ProjectionWorker
from projections.admin import TokensProjection
from projections.core import Projection
from projections.paper import PaperProjection
from projections.tasks import TasksProjection

log = logging.getLogger("gbserver")

PROJECTIONS: tuple[type[Projection], ...] = (TokensProjection, TasksProjection, PaperProjection)


@dataclass
class Services:
    settings: Settings
    app: GBApplication
    events: EventStoreAdapter
    read: SQLiteReadStore | PostgresReadStore
    projections: dict[str, Projection]
    signal: LogSignal = field(default_factory=LogSignal)
    positions: Positions = field(default_factory=Positions)
    workers: list[ProjectionWorker] = field(default_factory=list)
    cache: TtlCache[str, Any] = field(default_factory=lambda: TtlCache(60.0))
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        app = GBApplication(settings)
        read = open_read_store(settings)
        projections = {p.name: p(read) for p in PROJECTIONS}
        services = cls(settings, app, EventStoreAdapter(app), read, projections)
        services.cache = TtlCache(settings.auth_cache_ttl)
        app.on_saved(services.signal.saved)
        return services

    def start_workers(self) -> None:
        for projection in self.projections.values():
            worker = ProjectionWorker(projection, self.events, self.signal, self.positions)
            worker.start()
            self.workers.append(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.app.close()
        self.read.datastore.close()

    # --- what the HTTP layer is given -------------------------------------------------

    def deps(self) -> Deps:
        consistency = Consistency(
            self.projections.values(),
            self.positions,
            self.signal,
            self.events.max_notification_id,
        )
        authenticator = Authenticator(
            self.read,
            self.cache,
            self.settings.admin_token,
            lambda: consistency.catch_up(["tokens"], 2.0),
        )
        return Deps(
            read=self.read,
            history=self.events,
            tasks=TaskCommands(self.events),
            paper=PaperCommands(self.events),
            admin=AdminCommands(self.events),
            consistency=consistency,
            consistency_timeout=self.settings.consistency_timeout,
            authenticator=authenticator,
            health=self.health,
            stats=self.stats,
            event_log=self.event_log,
            max_body_bytes=self.settings.max_body_bytes,
            in_flight=InFlight(),
        )

    def health(self) -> dict[str, str]:
        checks = {
            "event_store": self._check_event_store,
            "read_store": self._check_read_store,
            "cache": self.cache.check,
            "storage": self._check_storage,
        }
        components: dict[str, str] = {}
        for name, check in checks.items():
            try:
                components[name] = "ok" if check() else "error"
            except Exception as e:  # noqa: BLE001 - a failed check is a report, not a crash
                log.warning("health check %s failed: %s", name, e)
                components[name] = "error"
        both = components["event_store"] == components["read_store"] == "ok"
        components["database"] = "ok" if both else "error"
        components["llm"] = "not_configured"
        stuck = [w.projection.name for w in self.workers if w.error]
        components["projections"] = "error" if stuck else "ok"
        return components

    def _check_event_store(self) -> bool:
        self.events.max_notification_id()
        return True

    def _check_read_store(self) -> bool:
        with self.read.read() as sql:
            sql.execute("SELECT 1 AS one")
            row = sql.fetchone()
        return row is not None and row["one"] == 1

    def _check_storage(self) -> bool:
        blobs = self.settings.data_dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        probe = blobs / f".health-{os.getpid()}"
        probe.write_bytes(b"ok")
        ok = probe.read_bytes() == b"ok"
        probe.unlink()
        return ok

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_seconds": int(time.monotonic() - self.started),
            "memory_used_mb": round(_rss_bytes() / 1_048_576, 1),
            "database_size_mb": round(self._database_bytes() / 1_048_576, 3),
            "cache_hit_rate": self.cache.hit_rate,
        }

    def _database_bytes(self) -> int:
        if self.settings.uses_postgres:
            return self.read.size_bytes()  # one PostgreSQL database holds both stores
        events = Path(self.app.env.get("SQLITE_DBNAME") or "")
        files = (events, events.with_name(events.name + "-wal"))
        return self.read.size_bytes() + sum(p.stat().st_size for p in files if p.exists())

    def event_log(self, after: int, limit: int) -> list[dict[str, Any]]:
        """The notification log as plain records, for `gbserver events` and the admin API."""
        records = []
        for n in self.events.notifications(after, limit, ()):
            data = self.events.decode_state(n.state)
            stamp = data.pop("timestamp", None)
            for private in ("originator_id", "originator_version", "originator_topic"):
                data.pop(private, None)
            records.append(
                {
                    "id": n.id,
                    "aggregate_id": str(n.originator_id),
                    "aggregate_version": n.originator_version,
                    "topic": n.topic,
                    "timestamp": rfc3339(stamp) if stamp is not None else None,
                    "data": data,
                }
            )
        return records


def _rss_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
