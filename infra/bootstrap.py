"""The composition root: picks adapters from Settings and wires every layer together."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.auth import Authenticator
from api.deps import InFlight, Wiring
from commands.admin import AdminCommands
from commands.kb import KnowledgeBase
from commands.ports import BlobStore
from infra.areas import (
    AREAS,
    AreaContext,
    area_listeners,
    area_workers,
    dependencies,
    open_projections,
    route_handlers,
)
from infra.areas import projections as area_projections
from infra.blobs import open_blob_store
from infra.cache import TtlCache
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from infra.kafka import FeedMonitor, FeedState, KafkaProjector, Partitioned, Relay, relay_lock
from infra.kb_index import LazyIndex, knowledge_base
from infra.llm import ChatCompletions
from infra.metrics import Metrics
from infra.monitoring import Monitoring
from infra.operations import ProjectionOps
from infra.pgnotify import LogListener
from infra.readstore import PostgresReadStore, SQLiteReadStore, open_read_store
from infra.runner import (
    Consistency,
    Layout,
    LogSignal,
    Positions,
    ProjectionWorker,
    SingleLog,
    TrackedPositions,
)
from infra.worker import Worker
from projections.core import Projection

log = logging.getLogger("gbserver")

PROJECTIONS: tuple[type[Projection], ...] = area_projections(AREAS)


JOIN_SECONDS = 20.0


@dataclass
class Services:
    settings: Settings
    app: GBApplication
    events: EventStoreAdapter
    read: SQLiteReadStore | PostgresReadStore
    projections: dict[str, Projection]
    blobs: BlobStore
    kb: KnowledgeBase
    kb_index: LazyIndex
    signal: LogSignal = field(default_factory=LogSignal)
    positions: Positions = field(default_factory=Positions)
    workers: list[Worker] = field(default_factory=list)
    relay: Relay | None = None
    monitor: FeedMonitor | None = None  # the Kafka feed's health, as every process sees it
    cache: TtlCache[str, Any] = field(default_factory=lambda: TtlCache(60.0))
    started: float = field(default_factory=time.monotonic)
    closed: bool = False
    ops: ProjectionOps | None = None
    metrics: Metrics = field(default_factory=Metrics)
    in_flight: InFlight = field(default_factory=InFlight)
    _monitoring: Monitoring | None = field(default=None, init=False, repr=False)
    _context: AreaContext | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        app = GBApplication(settings)
        read = open_read_store(settings)
        projections = open_projections(AREAS, {"sql": read})
        blobs = open_blob_store(settings)
        kb, kb_index = knowledge_base(settings, read)
        services = cls(
            settings, app, EventStoreAdapter(app), read, projections, blobs, kb, kb_index
        )
        services.cache = TtlCache(settings.auth_cache_ttl)
        app.on_saved(services.signal.saved)
        services.metrics = Metrics(
            projections=lambda: services.operations().statuses(),
            workers=lambda: services.workers,
        )
        app.on_saved(services.metrics.appended)
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
        workers = self.feed_workers(relay=relay, projectors=projectors, group=group)
        if projectors:
            workers += area_workers(AREAS, self.context())
        for worker in workers:
            worker.start()
            self.workers.append(worker)
        # Serving before a projector has joined its group would make the first writes wait
        # (read-your-writes) for the join: give it a bounded head start.
        deadline = time.monotonic() + JOIN_SECONDS
        for worker in self.workers:
            if not worker.ready.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s not ready after %ss; serving anyway", worker.name, JOIN_SECONDS)

    def start_listeners(self) -> None:
        """The areas' servers of other protocols (`serve` only); raises when one cannot
        listen (infra.smtp_inbound.ListenerUnavailable); `close` stops those started."""
        for listener in area_listeners(AREAS, self.context()):
            listener.start()
            self.workers.append(listener)

    def close(self) -> None:
        """Stops the workers and closes the stores; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.app.close()
        self.kb_index.close()
        self.read.datastore.close()

    # --- what the HTTP layer is given -------------------------------------------------

    def context(self) -> AreaContext:
        """What the areas build their dependencies, workers and listeners from: one for the
        process, so they all share its Consistency and Authenticator."""
        if self._context is None:
            self._context = self._new_context()
        return self._context

    def _new_context(self) -> AreaContext:
        monitor = self.feed_monitor()
        consistency = Consistency(
            self.projections.values(),
            self.positions,
            self.signal,
            self.events.max_notification_id,
            layout=self.layout(),
            stored_positions=TrackedPositions(self.read),
            feed_ok=monitor.ok if monitor else (lambda: True),
        )
        authenticator = Authenticator(
            self.read,
            self.cache,
            self.settings.admin_token,
            AdminCommands(self.events).token_by_hash,  # no wait on the tokens projection
        )
        return AreaContext(
            settings=self.settings,
            events=self.events,
            read=self.read,
            consistency=consistency,
            authenticator=authenticator,
            llm=self.llm,
            monitoring=self.monitoring(),
            operations=self.operations(),
            metrics=self.metrics,
            blobs=self.blobs,
            kb=self.kb,
        )

    def wiring(self) -> Wiring:
        """The app's route handlers and named dependencies, from every area."""
        ctx = self.context()
        return Wiring(
            route_handlers=route_handlers(AREAS),
            dependencies=dependencies(AREAS, ctx),
            authenticator=ctx.authenticator,
            max_body_bytes=self.settings.max_body_bytes,
            in_flight=self.in_flight,
            metrics=self.metrics,
        )

    def layout(self) -> Layout:
        """How the configured feed keys projection positions."""
        s = self.settings
        if s.uses_kafka:
            return Partitioned(s.kafka_partitions, FeedState(self.read, s.kafka_topic))
        return SingleLog()

    def operations(self) -> ProjectionOps:
        """The projections as an operator runs them: state, online rebuild, dead letters."""
        if self.ops is None:
            self.ops = ProjectionOps(
                self.settings,
                self.events,
                self.read,
                self.projections,
                self.layout(),
                TrackedPositions(self.read),
            )
        return self.ops

    def feed_monitor(self) -> FeedMonitor | None:
        """The Kafka feed's health from the relay's shared heartbeat (None without Kafka)."""
        s = self.settings
        if s.uses_kafka and self.monitor is None:
            state = FeedState(self.read, s.kafka_topic)
            self.monitor = FeedMonitor(state, self.events.max_notification_id)
        return self.monitor

    def monitoring(self) -> Monitoring:
        """Health checks and stats over this process's stores, cache and workers."""
        if self._monitoring is None:
            self._monitoring = Monitoring(
                self.settings,
                self.events,
                self.read,
                cache=self.cache,
                workers=lambda: self.workers,
                positions=self.positions,
                llm=self.llm,
                feed=self.feed_monitor,
                events_file=Path(self.app.env.get("SQLITE_DBNAME") or ""),
                in_flight=self.in_flight,
                started=self.started,
                blobs_check=getattr(self.blobs, "check", None),  # S3; None: the data-dir probe
                kb_check=self.kb_index.check,
            )
        return self._monitoring

    @property
    def llm(self) -> ChatCompletions | None:
        s = self.settings
        if not s.llm_url:
            return None
        return ChatCompletions(s.llm_url, s.llm_model, s.llm_key, s.llm_timeout)
