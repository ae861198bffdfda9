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
from typing import Any, Protocol, TypeVar

from eventsourcing.persistence import Tracking

from commands.ports import Saved, StoreUnavailable
from infra.eventstore import APP_NAME, EventStoreAdapter
from projections.core import Projection

log = logging.getLogger("gbserver.projections")

BATCH = 500
POLL_SECONDS = 1.0
ANY_TOPIC = ""
T = TypeVar("T")


class LogSignal:
    """The in-process 'something was saved' signal: the newest notification id per topic,
    so that a save wakes only the workers of the projections that read its topics."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: dict[str, int] = {}
        self._wakes = 0

    def saved(self, notification_id: int, topics: Iterable[str]) -> None:
        with self._cond:
            for topic in (*topics, ANY_TOPIC):
                self._latest[topic] = max(self._latest.get(topic, 0), notification_id)
            self._cond.notify_all()

    def wake_all(self) -> None:
        """Wakes every worker: to stop, or to look at writes made by other processes."""
        with self._cond:
            self._wakes += 1
            self._cond.notify_all()

    def wait_beyond(self, seen: int, topics: Sequence[str], timeout: float) -> None:
        """Waits for a save of one of these topics (any topic when empty) past `seen`."""
        topics = topics or (ANY_TOPIC,)
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

    def at(self, name: str) -> int:
        with self._cond:
            return self._at.get(name, 0)

    def snapshot(self, prefixes: tuple[str, ...]) -> dict[str, int]:
        with self._cond:
            return {k: v for k, v in self._at.items() if k.startswith(prefixes)}

    def wait_for_change(
        self, prefixes: tuple[str, ...], before: dict[str, int], deadline: float
    ) -> bool:
        """Waits until a position whose key starts with one of the prefixes is past `before`."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(
                    v > before.get(k, -1) for k, v in self._at.items() if k.startswith(prefixes)
                ),
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
        self.name = f"projection-{projection.name}"
        self.ready = threading.Event()
        self.ready.set()  # reads the log directly: nothing to join
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
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
            except StoreUnavailable as e:
                # An outage: report it once, and look again soon, so that writes waiting for
                # this projection are answered as soon as the database is back.
                if self.error is None:
                    log.warning("projection %s waits for storage: %s", self.projection.name, e)
                self.error = f"{type(e).__name__}: {e}"
                self._stop.wait(0.2)
            except Exception as e:  # noqa: BLE001 - a worker must outlive any one failure
                if self.error is None:
                    log.exception(
                        "projection %s failed after %s; retrying", self.projection.name, position
                    )
                self.error = f"{type(e).__name__}: {e}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _follow(self, position: int) -> None:
        topics = self.projection.topics
        while not self._stop.is_set():
            scanned_to = self.events.max_notification_id()
            batch = read_batch(self.events, position, BATCH, topics)
            self.error = None  # the store answers again
            if batch:
                self.projection.process_batch(batch)
                position = batch[-1][1].notification_id
                self.positions.advanced(self.projection.name, position)
                continue
            # Everything up to scanned_to is applied: the log holds nothing else for us.
            self.positions.advanced(self.projection.name, scanned_to)
            self.signal.wait_beyond(scanned_to, topics, POLL_SECONDS)


class Layout(Protocol):
    """How a feed keys projection positions: one per projection, or one per log partition."""

    def key(self, projection: str, aggregate_id: str) -> str: ...


class SingleLog:
    """The embedded feed delivers the log in one order: one position per projection."""

    def key(self, projection: str, aggregate_id: str) -> str:
        return projection


class Consistency:
    """Read-your-writes: wait until the projections that read a save's topics have it.

    Workers in this process wake the waiter as they advance; progress made by workers in
    other processes (`serve --no-workers`, or a consumer group's other members) is seen by
    reading the tracking table between ever longer waits.
    """

    def __init__(
        self,
        projections: Iterable[Projection],
        positions: Positions,
        signal: LogSignal,
        log_end: Callable[[], int],
        *,
        layout: Layout,
        stored_position: Callable[[str], int],
        feed_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        self._projections = list(projections)
        self._positions = positions
        self._signal = signal
        self._log_end = log_end
        self._layout = layout
        self._stored_position = stored_position
        self._feed_ok = feed_ok

    def targets(self, saved: Saved) -> dict[str, int]:
        targets: dict[str, int] = {}
        for projection in self._projections:
            for nid, topic, aggregate_id in saved.notifications:
                if topic in projection.topics:
                    key = self._layout.key(projection.name, aggregate_id)
                    targets[key] = max(targets.get(key, 0), nid)
        return targets

    def wait(self, saved: Saved, timeout: float) -> bool:
        """True when every projection concerned has the save; False on timeout, or at once
        when the feed is known to be down (the write is safe in the log; reads lag)."""
        targets = self.targets(saved)
        if not targets:
            return True
        if not self._feed_ok():
            return False
        return self._reach(targets, time.monotonic() + timeout)

    def _reach(self, targets: dict[str, int], deadline: float) -> bool:
        pause = 0.005
        while True:
            if self._positions.wait_for(targets, min(deadline, time.monotonic() + pause)):
                return True
            if all(self._stored_position(k) >= nid for k, nid in targets.items()):
                return True
            if time.monotonic() >= deadline:
                return False
            pause = min(pause * 2, 0.1)

    def find(self, names: Iterable[str], probe: Callable[[], T | None], timeout: float) -> T | None:
        """Probes the read model; while the probe finds nothing and these projections are
        still taking in newer events (written by anyone, anywhere), probes again.

        For what other processes wrote: a token issued by `gbserver token create`, the
        resource of an Idempotency-Key whose first request is still on its way.
        """
        deadline = time.monotonic() + timeout
        wanted = tuple(names)
        while True:
            # Positions are read before the probe: what the probe saw is at least that far.
            seen = self._positions.snapshot(wanted)
            seen.update({n: max(seen.get(n, 0), self._stored_position(n)) for n in wanted})
            found = probe()
            if found is not None or time.monotonic() >= deadline:
                return found
            if not self._advanced(wanted, seen, deadline):
                return found

    def _advanced(self, names: tuple[str, ...], seen: dict[str, int], deadline: float) -> bool:
        """Waits for these projections to go past what the last probe saw; False when the log
        holds nothing newer for them, or at the deadline."""
        self._signal.wake_all()  # the writer may be another process: look now
        if isinstance(self._layout, SingleLog):
            end = self._log_end()
            if all(seen[n] >= end for n in names):
                return False
            return self._reach(dict.fromkeys(names, end), deadline)
        # A partitioned feed cannot tell where the newest events went: wait for any advance.
        return self._positions.wait_for_change(names, seen, deadline)


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
