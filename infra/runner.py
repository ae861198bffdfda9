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
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from eventsourcing.persistence import Tracking

from commands.ports import Saved, StoreUnavailable, StoreUnreachable
from infra.eventstore import APP_NAME, EventStoreAdapter
from infra.readstore import PostgresReadStore, SQLiteReadStore
from infra.worker import Worker
from projections.core import Projection, Rebuilt

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

    def wait_beyond(
        self,
        seen: int,
        topics: Sequence[str],
        timeout: float,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Waits for a save of one of these topics (any topic when empty) past `seen`, or
        for `stopping` (checked under the lock `wake_all` takes: a stop set before the wait
        began is not missed)."""
        topics = topics or (ANY_TOPIC,)
        with self._cond:
            wakes = self._wakes
            self._cond.wait_for(
                lambda: (
                    self._wakes != wakes
                    or stopping()
                    or any(self._latest.get(t, 0) > seen for t in topics)
                ),
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


class ProjectionWorker(Worker):
    logger = log
    quiet = (Rebuilt,)  # a rebuild swapped the tables in: read the position again, at once
    backoff_start = 0.1
    stop_seconds = 10.0

    def __init__(
        self,
        projection: Projection,
        events: EventStoreAdapter,
        signal: LogSignal,
        positions: Positions,
    ) -> None:
        super().__init__(f"projection-{projection.name}")
        self.projection = projection
        self.events = events
        self.signal = signal
        self.positions = positions
        self.position = 0  # the last notification applied (or scanned past)
        self.ready.set()  # reads the log directly: nothing to join

    def _wake(self) -> None:
        self.signal.wake_all()  # so the thread sees the stop flag

    def _is_outage(self, exc: Exception) -> bool:
        # The storage's outage (health reports the store), not this read model failing on
        # an event: it is not stalled, it waits.
        return isinstance(exc, StoreUnreachable)

    def _retry_after(self, exc: Exception) -> float | None:
        # Storage failing: look again soon (no growing backoff), so that writes waiting for
        # this projection are answered as soon as the database is back.
        return 0.2 if isinstance(exc, StoreUnavailable) else None

    def _context(self) -> str:
        return f" after {self.position}"

    def _step(self) -> None:
        self.projection.load_generation()  # before the position: a swap after it is seen
        self.position = self.projection.view.max_tracking_id(self.projection.name) or 0
        self.positions.advanced(self.projection.name, self.position)
        topics = self.projection.topics
        while not self._stop.is_set():
            scanned_to = self.events.max_notification_id()
            batch = read_batch(self.events, self.position, BATCH, topics)
            if batch:
                self.projection.process_batch(batch)
                self._recovered()  # the error clears once a batch applies: health reads it
                self.position = batch[-1][1].notification_id
                self.positions.advanced(self.projection.name, self.position)
                continue
            self._recovered()  # the store answers and nothing is left to apply
            # Everything up to scanned_to is applied: the log holds nothing else for us.
            self.positions.advanced(self.projection.name, scanned_to)
            self.signal.wait_beyond(scanned_to, topics, POLL_SECONDS, self._stop.is_set)


class Layout(Protocol):
    """How a feed keys projection positions: one per projection, or one per log partition."""

    def key(self, projection: str, aggregate_id: str) -> str: ...

    def horizon(self, names: Collection[str], log_end: int) -> dict[str, int] | None:
        """The positions these projections must reach to hold every event up to log_end,
        or None when the feed cannot tell yet."""
        ...


class SingleLog:
    """The embedded feed delivers the log in one order: one position per projection."""

    def key(self, projection: str, aggregate_id: str) -> str:
        return projection

    def horizon(self, names: Collection[str], log_end: int) -> dict[str, int] | None:
        return dict.fromkeys(names, log_end)


class TrackedPositions:
    """The positions recorded in the read store's tracking table for some projections
    (`tasks`, and `tasks:p0`... on a partitioned feed), in one query: what every process's
    workers have applied, not only this one's."""

    def __init__(self, read: SQLiteReadStore | PostgresReadStore) -> None:
        self.read = read

    def __call__(self, names: Collection[str]) -> dict[str, int]:
        if not names:
            return {}
        where = " OR ".join(["application_name = ? OR application_name LIKE ?"] * len(names))
        params = [p for n in names for p in (n, f"{n}:%")]
        with self.read.read() as sql:
            sql.execute(
                "SELECT application_name, notification_id"
                f" FROM {self.read._tracking_table()} WHERE {where}",
                params,
            )
            rows = sql.fetchall()
        wanted = set(names)
        return {
            r["application_name"]: int(r["notification_id"])
            for r in rows
            if r["notification_id"] is not None and r["application_name"].split(":", 1)[0] in wanted
        }


def _projection(key: str) -> str:
    return key.split(":", 1)[0]


class Consistency:
    """Read-your-writes: wait until the projections that read a save's topics have it.

    Workers in this process wake the waiter as they advance; progress made by workers in
    other processes (`serve --no-workers`, or a consumer group's other members) is seen by
    reading the tracking table between ever longer waits (at most POLL_PAUSE apart).
    """

    POLL_PAUSE = 0.1

    def __init__(
        self,
        projections: Iterable[Projection],
        positions: Positions,
        signal: LogSignal,
        log_end: Callable[[], int],
        *,
        layout: Layout,
        stored_positions: Callable[[Collection[str]], dict[str, int]],
        feed_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        self._projections = list(projections)
        self._positions = positions
        self._signal = signal
        self._log_end = log_end
        self._layout = layout
        self._stored = stored_positions
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
        """True when every projection concerned has the save; False on timeout, or as soon
        as the feed is known to be down (the write is safe in the log; reads lag)."""
        targets = self.targets(saved)
        if not targets:
            return True
        if not self._feed_ok():
            return False
        return self._reach(targets, time.monotonic() + timeout)

    def _seen(self, names: Collection[str]) -> dict[str, int]:
        """Every position of these projections: this process's workers' and the stored."""
        seen = self._positions.snapshot(tuple(names))
        for key, position in self._stored(names).items():
            seen[key] = max(seen.get(key, 0), position)
        return seen

    @staticmethod
    def _at(seen: dict[str, int], key: str) -> int:
        """A key's position; a projection's own (written by a rebuild) counts for its parts."""
        return max(seen.get(key, 0), seen.get(_projection(key), 0))

    def _reach(self, targets: dict[str, int], deadline: float) -> bool:
        names = {_projection(k) for k in targets}
        pause = 0.005
        while True:
            if self._positions.wait_for(targets, min(deadline, time.monotonic() + pause)):
                return True
            seen = self._seen(names)
            if all(self._at(seen, k) >= nid for k, nid in targets.items()):
                return True
            if time.monotonic() >= deadline or not self._feed_ok():
                return False
            pause = min(pause * 2, self.POLL_PAUSE)

    def find(self, names: Iterable[str], probe: Callable[[], T | None], timeout: float) -> T | None:
        """Probes the read model; while the probe finds nothing and these projections are
        still taking in events the log holds (written by anyone, anywhere), probes again.

        For what other processes wrote: a token issued by `gbserver token create`, the
        resource of an Idempotency-Key whose first request is still on its way. Answers
        None at once when the projections had the whole log before the probe; otherwise
        probes again each time one of them advances, and once more at the deadline.
        """
        deadline = time.monotonic() + timeout
        wanted = tuple(names)
        while True:
            # In this order: what the log holds, how far the projections are, then the
            # probe, which sees at least that far.
            horizon = self._layout.horizon(wanted, self._log_end())
            seen = self._seen(wanted)
            found = probe()
            if found is not None or time.monotonic() >= deadline:
                return found
            if horizon is not None and all(self._at(seen, k) >= nid for k, nid in horizon.items()):
                return None  # the read model held every event in the log: it is not there
            self._advanced(wanted, seen, deadline)

    def _advanced(self, names: tuple[str, ...], seen: dict[str, int], deadline: float) -> bool:
        """Waits for one of these projections to go past what the last probe saw, here or in
        another process; False at the deadline."""
        self._signal.wake_all()  # the writer may be another process: look now
        pause = 0.005
        while True:
            if self._positions.wait_for_change(
                names, seen, min(deadline, time.monotonic() + pause)
            ):
                return True
            if any(p > seen.get(k, 0) for k, p in self._stored(names).items()):
                return True
            if time.monotonic() >= deadline:
                return False
            pause = min(pause * 2, self.POLL_PAUSE)
