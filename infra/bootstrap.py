"""The composition root: picks adapters from Settings and wires every layer together."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from api.auth import Authenticator
from api.deps import Deps, InFlight
from commands.admin import AdminCommands
from commands.bots import BotCommands
from commands.designer import DesignerCommands
from commands.paper import PaperCommands
from commands.sessions import Deployed, SessionCommands, TurnLimits
from commands.tasks import TaskCommands
from domain.basic import PlatformError
from domain.common import rfc3339
from infra.cache import TtlCache
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from infra.kafka import FeedMonitor, FeedState, KafkaProjector, Partitioned, Relay, relay_lock
from infra.llm import ChatCompletions
from infra.pgnotify import LogListener
from infra.readstore import PostgresReadStore, SQLiteReadStore, open_read_store
from infra.runner import (
    Consistency,
    LogSignal,
    Positions,
    ProjectionWorker,
    SingleLog,
    TrackedPositions,
)
from projections.admin import TokensProjection
from projections.bots import BotsProjection
from projections.core import Projection, ReadStore
from projections.designer import (
    DeployedSource,
    DesignerProjection,
    deployed_source,
    dialog_names,
    dialog_source,
    live_dialog,
)
from projections.paper import PaperProjection
from projections.sessions import SessionsProjection
from projections.tasks import TasksProjection

log = logging.getLogger("gbserver")

PROJECTIONS: tuple[type[Projection], ...] = (
    TokensProjection,
    TasksProjection,
    PaperProjection,
    DesignerProjection,
    SessionsProjection,
    BotsProjection,
)


class DesignerCatalog:
    """The sessions' view of deployed dialogs (commands.sessions.DialogCatalog)."""

    def __init__(self, read: ReadStore) -> None:
        self.read = read

    def live(self, bot_id: str, name: str) -> Deployed | None:
        return _deployed(live_dialog(self.read, bot_id, name))

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        return _deployed(dialog_source(self.read, bot_id, name, version))

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        return _deployed(deployed_source(self.read, dialog_id, version))


def _deployed(found: DeployedSource | None) -> Deployed | None:
    return None if found is None else Deployed(found.id, found.version, found.content)


JOIN_SECONDS = 20.0


class Worker(Protocol):
    name: str
    error: str | None
    ready: threading.Event

    @property
    def stalled(self) -> bool:
        """A read model stuck on the log (an event it cannot apply), not a passing outage."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Services:
    settings: Settings
    app: GBApplication
    events: EventStoreAdapter
    read: SQLiteReadStore | PostgresReadStore
    projections: dict[str, Projection]
    signal: LogSignal = field(default_factory=LogSignal)
    positions: Positions = field(default_factory=Positions)
    workers: list[Worker] = field(default_factory=list)
    relay: Relay | None = None
    monitor: FeedMonitor | None = None  # the Kafka feed's health, as every process sees it
    cache: TtlCache[str, Any] = field(default_factory=lambda: TtlCache(60.0))
    started: float = field(default_factory=time.monotonic)
    closed: bool = False

    @classmethod
    def open(cls, settings: Settings) -> Services:
        app = GBApplication(settings)
        read = open_read_store(settings)
        projections = {p.name: p(read) for p in PROJECTIONS}
        services = cls(settings, app, EventStoreAdapter(app), read, projections)
        services.cache = TtlCache(settings.auth_cache_ttl)
        app.on_saved(services.signal.saved)
        return services

    def feed_workers(
        self, *, relay: bool = True, projectors: bool = True, group: str | None = None
    ) -> list[Worker]:
        """The workers that move the log into the read models, for the configured feed."""
        s = self.settings
        workers: list[Worker] = []
        if s.uses_postgres and (relay or projectors):
            channel: str = getattr(self.app.recorder, "channel_name", "")
            workers.append(LogListener(s, channel, self.signal.wake_all))
        if not s.uses_kafka:
            if projectors:
                workers += [
                    ProjectionWorker(p, self.events, self.signal, self.positions)
                    for p in self.projections.values()
                ]
            return workers
        if relay:
            self.relay = Relay(
                self.events,
                self.read,
                self.signal,
                s.kafka_bootstrap,
                s.kafka_topic,
                s.kafka_partitions,
                lock=relay_lock(s),
                readers={p.name: p.topics for p in self.projections.values()},
            )
            workers.append(self.relay)
        if projectors:
            workers.append(
                KafkaProjector(
                    list(self.projections.values()),
                    self.events,
                    self.positions,
                    s.kafka_bootstrap,
                    s.kafka_topic,
                    group or s.kafka_group,
                    s.kafka_partitions,
                )
            )
        return workers

    def start_workers(
        self, *, relay: bool = True, projectors: bool = True, group: str | None = None
    ) -> None:
        for worker in self.feed_workers(relay=relay, projectors=projectors, group=group):
            worker.start()
            self.workers.append(worker)
        # Serving before a projector has joined its group would make the first writes wait
        # (read-your-writes) for the join: give it a bounded head start.
        deadline = time.monotonic() + JOIN_SECONDS
        for worker in self.workers:
            if not worker.ready.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s not ready after %ss; serving anyway", worker.name, JOIN_SECONDS)

    def close(self) -> None:
        """Stops the workers and closes the stores; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.app.close()
        self.read.datastore.close()

    # --- what the HTTP layer is given -------------------------------------------------

    def deps(self) -> Deps:
        s = self.settings
        monitor = self.feed_monitor()
        consistency = Consistency(
            self.projections.values(),
            self.positions,
            self.signal,
            self.events.max_notification_id,
            layout=(
                Partitioned(s.kafka_partitions, FeedState(self.read, s.kafka_topic))
                if s.uses_kafka
                else SingleLog()
            ),
            stored_positions=TrackedPositions(self.read),
            feed_ok=monitor.ok if monitor else (lambda: True),
        )
        authenticator = Authenticator(
            self.read,
            self.cache,
            self.settings.admin_token,
            AdminCommands(self.events).token_by_hash,  # no wait on the tokens projection
        )
        return Deps(
            read=self.read,
            history=self.events,
            tasks=TaskCommands(self.events),
            paper=PaperCommands(self.events),
            # No GB_HTTP_ALLOW yet: HTTP keywords validate with a warning that they are off.
            designer=DesignerCommands(
                self.events, lambda bot_id: dialog_names(self.read, bot_id), http_allowed=False
            ),
            bots=BotCommands(self.events),
            admin=AdminCommands(self.events),
            sessions=SessionCommands(
                self.events,
                DesignerCatalog(self.read),
                self.llm,
                limits=TurnLimits(
                    max_state_bytes=s.turn_max_state_bytes,
                    max_value_bytes=s.turn_max_value_bytes,
                    max_event_bytes=s.turn_max_event_bytes,
                    max_calls=s.turn_max_calls,
                    seconds=s.turn_seconds,
                ),
            ),
            consistency=consistency,
            consistency_timeout=self.settings.consistency_timeout,
            authenticator=authenticator,
            health=self.health,
            stats=self.stats,
            event_log=self.event_log,
            max_body_bytes=self.settings.max_body_bytes,
            in_flight=InFlight(),
        )

    def feed_monitor(self) -> FeedMonitor | None:
        """The Kafka feed's health from the relay's shared heartbeat (None without Kafka)."""
        s = self.settings
        if s.uses_kafka and self.monitor is None:
            state = FeedState(self.read, s.kafka_topic)
            self.monitor = FeedMonitor(state, self.events.max_notification_id)
        return self.monitor

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
        components["llm"] = self._llm_status()
        # A projection is stalled when its worker's last attempt failed on the log (not on a
        # storage outage, which the store checks report) and it has not applied the log's end
        # (a projection worker that failed once but caught up since is fine).
        try:
            end: int | None = self.events.max_notification_id()
        except Exception:  # noqa: BLE001 - the event store's own check reports it
            end = None
        stuck = [w.name for w in self.workers if self._stalled(w, end)]
        components["projections"] = "error" if stuck else "ok"
        if self.settings.uses_kafka:
            monitor = self.feed_monitor()
            components["kafka"] = "ok" if monitor is None or monitor.ok() else "error"
        return components

    def _stalled(self, worker: Worker, end: int | None) -> bool:
        if not worker.stalled:
            return False
        if isinstance(worker, ProjectionWorker):  # failed once, but has caught up since
            return end is None or self.positions.at(worker.projection.name) < end
        return True

    @property
    def llm(self) -> ChatCompletions | None:
        s = self.settings
        if not s.llm_url:
            return None
        return ChatCompletions(s.llm_url, s.llm_model, s.llm_key, s.llm_timeout)

    def _llm_status(self) -> str:
        llm = self.llm
        if llm is None:
            return "not_configured"
        try:
            return "ok" if llm.check() else "error"
        except PlatformError as e:
            log.warning("health check llm failed: %s", e)
            return "error"

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
        probe = blobs / f".health-{uuid.uuid4().hex}"  # one per check: checks run concurrently
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
