"""What an operator watches: health checks and stats (api.admin's `Monitor`), and the event
log as plain records (api.admin's `EventBrowser`, and `gbserver events`)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from api.deps import InFlight
from domain.basic import PlatformError
from domain.common import rfc3339
from infra.cache import TtlCache
from infra.config import Settings
from infra.eventstore import EventStoreAdapter
from infra.kafka import FeedMonitor
from infra.llm import ChatCompletions
from infra.readstore import PostgresReadStore, SQLiteReadStore
from infra.runner import Positions, ProjectionWorker
from infra.worker import Worker

log = logging.getLogger("gbserver")

STORAGE_TTL = 2.0  # seconds one probe of a remote blob store (S3) answers the health check


class Monitoring:
    """The health report's components and the process's stats."""

    def __init__(
        self,
        settings: Settings,
        events: EventStoreAdapter,
        read: SQLiteReadStore | PostgresReadStore,
        *,
        cache: TtlCache[str, Any],
        workers: Callable[[], Sequence[Worker]],
        positions: Positions,
        llm: ChatCompletions | None,
        feed: Callable[[], FeedMonitor | None],
        events_file: Path,
        in_flight: InFlight,
        started: float,
        blobs_check: Callable[[], None] | None = None,
        kb_check: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.events = events
        self.read = read
        self.cache = cache
        self.workers = workers  # the process's workers as they are now
        self.positions = positions
        self.llm = llm
        self.feed = feed  # the Kafka feed's health (None without Kafka)
        self.events_file = events_file  # the embedded event store's SQLite file
        self.in_flight = in_flight
        self.started = started
        # The blob store's own probe (S3BlobStore.check: raises when the bucket does not
        # answer); None: the embedded store, probed by writing a file under data_dir/blobs.
        self.blobs_check = blobs_check
        self._storage = _Probe()
        # The knowledge base's index (raises when it cannot be reached); None: not in use yet.
        self.kb_check = kb_check
        self._kb = _Probe()

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
        components["knowledge_base"] = self._kb_status()
        # A projection is stalled when its worker's last attempt failed on the log (not on a
        # storage outage, which the store checks report) and it has not applied the log's end
        # (a projection worker that failed once but caught up since is fine).
        try:
            end: int | None = self.events.max_notification_id()
        except Exception:  # noqa: BLE001 - the event store's own check reports it
            end = None
        stuck = [w.name for w in self.workers() if self._stalled(w, end)]
        components["projections"] = "error" if stuck or self._recorded_stall() else "ok"
        if self.settings.uses_kafka:
            monitor = self.feed()
            components["kafka"] = "ok" if monitor is None or monitor.ok() else "error"
        return components

    def _recorded_stall(self) -> bool:
        """A projection stalled on an event, as recorded by whichever process applies it
        (a projector apart from this API too); False when the read store cannot say."""
        try:
            with self.read.read() as sql:
                sql.execute(
                    "SELECT name FROM gbserver_projections WHERE stalled_on IS NOT NULL LIMIT 1"
                )
                return sql.fetchone() is not None
        except Exception:  # noqa: BLE001 - the read store's own check reports it
            return False

    def _stalled(self, worker: Worker, end: int | None) -> bool:
        if not worker.stalled:
            return False
        if isinstance(worker, ProjectionWorker):  # failed once, but has caught up since
            return end is None or self.positions.at(worker.projection.name) < end
        return True

    def _llm_status(self) -> str:
        if self.llm is None:
            return "not_configured"
        try:
            return "ok" if self.llm.check() else "error"
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
        if self.blobs_check is not None:
            return self._check_remote_storage(self.blobs_check)
        blobs = self.settings.data_dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        probe = blobs / f".health-{uuid.uuid4().hex}"  # one per check: checks run concurrently
        probe.write_bytes(b"ok")
        ok = probe.read_bytes() == b"ok"
        probe.unlink()
        return ok

    def _check_remote_storage(self, check: Callable[[], None]) -> bool:
        self._storage.run(check)
        return True

    def _kb_status(self) -> str:
        """Optional, like the LLM: `error` shows, the server stays healthy (searches 503)."""
        if self.kb_check is None:
            return "ok"
        try:
            self._kb.run(self.kb_check)
        except Exception as e:  # noqa: BLE001 - a failed check is a report
            log.warning("health check knowledge_base failed: %s", e)
            return "error"
        return "ok"

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_seconds": int(time.monotonic() - self.started),
            "memory_used_mb": round(_rss_bytes() / 1_048_576, 1),
            "active_connections": self.in_flight.count,
            "database_size_mb": round(self._database_bytes() / 1_048_576, 3),
            "cache_hit_rate": self.cache.hit_rate,
        }

    def _database_bytes(self) -> int:
        if self.settings.uses_postgres:
            return self.read.size_bytes()  # one PostgreSQL database holds both stores
        events = self.events_file
        files = (events, events.with_name(events.name + "-wal"))
        return self.read.size_bytes() + sum(p.stat().st_size for p in files if p.exists())


class EventLog:
    """The notification log as plain records, a page at a time."""

    def __init__(self, events: EventStoreAdapter) -> None:
        self.events = events

    def page(self, after: int, limit: int) -> list[dict[str, Any]]:
        records = []
        for n in self.events.notifications(after, limit, ()):
            data = self.events.decode_state(n.state)
            stamp = data.pop("timestamp", None)
            schema_version = data.pop("class_version", 1)  # the library stores it past 1
            for private in ("originator_id", "originator_version", "originator_topic"):
                data.pop(private, None)
            records.append(
                {
                    "id": n.id,
                    "aggregate_id": str(n.originator_id),
                    "aggregate_version": n.originator_version,
                    "topic": n.topic,
                    "timestamp": rfc3339(stamp) if stamp is not None else None,
                    "schema_version": schema_version,
                    "data": data,
                }
            )
        return records


def _rss_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Probe:
    """A remote check run once per STORAGE_TTL, shared by the health requests meanwhile (a
    network round trip, which S3 may bill); `run` raises the check's error, as a failed
    check does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._error: Exception | None = None

    def run(self, check: Callable[[], None]) -> None:
        with self._lock:
            if time.monotonic() - self._checked >= STORAGE_TTL:
                try:
                    check()
                    self._error = None
                except Exception as e:  # noqa: BLE001 - kept and re-raised as the report
                    self._error = e
                self._checked = time.monotonic()
            if self._error is not None:
                raise self._error.with_traceback(None)  # one report, not a chain
