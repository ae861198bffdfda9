"""Runs projections over the embedded feed: the event store's own notification log.

Each projection has a worker thread that pulls batches after its tracking position,
applies them in one transaction, and sleeps until a save in this process wakes it (or,
as a fallback for writers in other processes, until a short poll interval passes).
Writers wait on `Consistency` for the projections behind their reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from eventsourcing.persistence import Tracking

from commands.ports import Saved
from infra.eventstore import APP_NAME, EventStoreAdapter
from projections.core import Projection

log = logging.getLogger("gbserver.projections")

BATCH = 500
POLL_SECONDS = 1.0


class LogSignal:
    """The in-process 'something was saved' signal: the newest notification id per topic,
    so that a save wakes only the workers of the projections that read its topics."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: dict[str, int] = {}
        self._wakes = 0

    def saved(self, notification_id: int, topics: Iterable[str]) -> None:
        with self._cond:
            for topic in topics:
                self._latest[topic] = max(self._latest.get(topic, 0), notification_id)
            self._cond.notify_all()

    def wake_all(self) -> None:
        """Wakes every worker: to stop, or to look at writes made by other processes."""
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()

    def wait_beyond(self, seen: int, topics: Sequence[str], timeout: float) -> None:
        with self._cond:
            wakes = self._wakes
            self._cond.wait_for(
                lambda: self._wakes != wakes or any(self._latest.get(t, 0) > seen for t in topics),
                timeout=timeout,
            )


class Positions:
    """Where each local projection is, so writers can wait without polling."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._at: dict[str, int] = {}

    def advanced(self, name: str, position: int) -> None:
        with self._cond:
            self._at[name] = max(self._at.get(name, 0), position)
            self._cond.notify_all()

    def wait_for(self, targets: dict[str, int], deadline: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: all(self._at.get(n, 0) >= p for n, p in targets.items()),
                timeout=max(0.0, deadline - time.monotonic()),
            )


def read_batch(
    events: EventStoreAdapter, after: int, limit: int, topics: Sequence[str]
) -> list[tuple[Any, Tracking]]:
    return [
        (events.decode(n), Tracking(APP_NAME, n.id))
        for n in events.notifications(after, limit, topics)
    ]


class ProjectionWorker:
    def __init__(
        self,
        projection: Projection,
        events: EventStoreAdapter,
        signal: LogSignal,
        positions: Positions,
    ) -> None:
        self.projection = projection
        self.events = events
        self.signal = signal
        self.positions = positions
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"projection-{projection.name}", daemon=True
        )
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.signal.wake_all()  # so the thread sees the stop flag
        self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = 0.1
        position = 0
        while not self._stop.is_set():
            try:
                position = self.projection.view.max_tracking_id(self.projection.name) or 0
                self.positions.advanced(self.projection.name, position)
                self._follow(position)
                backoff = 0.1
                self.error = None
            except Exception as e:  # noqa: BLE001 - a worker must outlive any one failure
                self.error = f"{type(e).__name__}: {e}"
                log.exception(
                    "projection %s failed after %s; retrying", self.projection.name, position
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _follow(self, position: int) -> None:
        topics = self.projection.topics
        while not self._stop.is_set():
            scanned_to = self.events.max_notification_id()
            batch = read_batch(self.events, position, BATCH, topics)
            if batch:
                self.projection.process_batch(batch)
                position = batch[-1][1].notification_id
                self.positions.advanced(self.projection.name, position)
                continue
            # Everything up to scanned_to is applied: the log holds nothing else for us.
            self.positions.advanced(self.projection.name, scanned_to)
            self.signal.wait_beyond(scanned_to, topics, POLL_SECONDS)


class Consistency:
    """Read-your-writes: wait until the projections that read a save's topics have it."""

    def __init__(
        self,
        projections: Iterable[Projection],
        positions: Positions,
        signal: LogSignal,
        log_end: Callable[[], int],
    ) -> None:
        self._projections = list(projections)
        self._positions = positions
        self._signal = signal
        self._log_end = log_end

    def targets(self, saved: Saved) -> dict[str, int]:
        targets: dict[str, int] = {}
        for projection in self._projections:
            ids = [nid for nid, topic in saved.notifications if topic in projection.topics]
            if ids:
                targets[projection.name] = max(ids)
        return targets

    def wait(self, saved: Saved, timeout: float) -> bool:
        """True when every projection concerned has the save; False on timeout."""
        targets = self.targets(saved)
        return not targets or self._positions.wait_for(targets, time.monotonic() + timeout)

    def catch_up(self, names: Iterable[str], timeout: float) -> bool:
        """Waits until these projections have everything in the log now, whoever wrote it."""
        end = self._log_end()
        self._signal.wake_all()  # the writer may be another process: look now
        return self._positions.wait_for(dict.fromkeys(names, end), time.monotonic() + timeout)


def rebuild(
    projection: Projection,
    events: EventStoreAdapter,
    progress: Callable[[int, int], None],
    batch_size: int = 5000,
) -> int:
    """Drops the projection's tables and replays the whole log into them. Returns events applied."""
    projection.reset()
    total = events.max_notification_id()
    position, applied = 0, 0
    while True:
        notifications = events.notifications(position, batch_size, ())
        if not notifications:
            break
        position = notifications[-1].id
        mine = [
            (events.decode(n), Tracking(APP_NAME, n.id))
            for n in notifications
            if n.topic in projection.topics
        ]
        projection.process_batch(mine)
        applied += len(mine)
        progress(position, total)
    return applied
