"""Projections as things an operator runs: their state, online rebuilds, dead letters.

Every process reads the same facts (the read store's tracking and control tables and the
log), so an API started with `--no-workers`, `gbserver rebuild` and the server agree on
what each projection is doing.

An online rebuild replays the log into a shadow store (a SQLite file or a PostgreSQL schema
of its own) while the live tables keep serving and keep taking new events, catches up,
then swaps the shadow's tables in within one transaction of the live store that holds the
projection's writers off (ReadStore.swap): a reader sees the old tables or the new, never a
half-built one, and no event is lost — the shadow is brought to the log's head inside the
swap, and the live workers, told by the generation that the tables changed under them,
read their positions again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from eventsourcing.persistence import Tracking

from infra.config import Settings
from infra.eventstore import APP_NAME, EventStoreAdapter
from infra.locks import Lock, lock_for
from infra.readstore import PostgresReadStore, ShadowStore, SQLiteReadStore, SwapBusy
from infra.runner import Layout
from projections.core import POLICIES, Page, Policy, Projection, Row, describe, now_text, page
from projections.operations import (
    DeadLetter,
    DeadLetterFailed,
    Failure,
    ProjectionStatus,
    RebuildProgress,
    RebuildRunning,
    State,
    UnknownProjection,
)

log = logging.getLogger("gbserver.operations")

REPLAY_BATCH = 5000
CLOSE_ENOUGH = 2000  # events left before the rebuild swaps (the rest is applied in the swap)
# lag_events counts the projection's events up to this many; past it, every log entry after the
# position (an upper bound): a scrape of a far-behind projection stays cheap.
LAG_COUNT_LIMIT = 10_000
SWAP_ATTEMPTS = 20  # a swap that cannot take its locks gives way and tries again
REBUILD_STALE_SECONDS = 15.0  # a rebuild that has not reported for this long has died


class StoredPositions(Protocol):
    def __call__(self, names: Collection[str]) -> dict[str, int]: ...


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


class ProjectionOps:
    def __init__(
        self,
        settings: Settings,
        events: EventStoreAdapter,
        read: SQLiteReadStore | PostgresReadStore,
        projections: Mapping[str, Projection],
        layout: Layout,
        stored: StoredPositions,
    ) -> None:
        self.settings = settings
        self.events = events
        self.read = read
        self.projections = projections
        self.layout = layout
        self.stored = stored
        self._running: dict[str, threading.Thread] = {}

    def projection(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections))
            raise UnknownProjection(f"projection {name!r} (known: {known})") from None

    # --- state ---------------------------------------------------------------------------

    def _control(self) -> dict[str, Row]:
        with self.read.read() as sql:
            sql.execute("SELECT * FROM gbserver_projections")
            rows = {r["name"]: r for r in sql.fetchall()}
            sql.execute(
                "SELECT projection, COUNT(*) AS n FROM gbserver_dead_letters GROUP BY projection"
            )
            for r in sql.fetchall():
                if r["projection"] in rows:
                    rows[r["projection"]]["dead_letters"] = int(r["n"])
        return rows

    def position(self, name: str, head: int) -> int:
        """How far the projection holds the log: every event up to this id is applied (on a
        partitioned feed, the least position of the partitions still behind)."""
        horizon = self.layout.horizon((name,), head)
        seen = self.stored((name,))
        own = seen.get(name, 0)
        if horizon is None:
            parts = [v for k, v in seen.items() if k != name]
            return max(own, min(parts)) if parts else own
        behind = [
            max(seen.get(k, 0), own)
            for k, target in horizon.items()
            if max(seen.get(k, 0), own) < target
        ]
        return min(behind) if behind else head

    def statuses(self) -> list[ProjectionStatus]:
        head = self.events.max_notification_id()
        control = self._control()
        return [self._status(p, head, control.get(p.name, {})) for p in self.projections.values()]

    def status(self, name: str) -> ProjectionStatus:
        projection = self.projection(name)
        head = self.events.max_notification_id()
        return self._status(projection, head, self._control().get(name, {}))

    def _status(self, p: Projection, head: int, row: Row) -> ProjectionStatus:
        position = min(self.position(p.name, head), head)
        pending = (
            self.events.notifications(position, LAG_COUNT_LIMIT, p.topics)
            if (position < head)
            else []
        )
        lag_events = len(pending) if len(pending) < LAG_COUNT_LIMIT else head - position
        lag_seconds: float | None = 0.0
        if pending:
            stamp = self.events.decode_state(pending[0].state).get("timestamp")
            lag_seconds = (
                max(0.0, (datetime.now(UTC) - stamp).total_seconds())
                if isinstance(stamp, datetime)
                else None
            )
        failure = None
        if row.get("stalled_on") is not None:
            failure = Failure(
                int(row["stalled_on"]),
                row["stalled_topic"] or "",
                row["error"] or "",
                row["failed_at"],
            )
        rebuild = None
        if row.get("rebuild_started"):
            rebuild = RebuildProgress(
                row["rebuild_started"],
                int(row["rebuild_position"] or 0),
                int(row["rebuild_head"] or 0),
                row["rebuild_error"],
            )
        beat = _parse(row.get("rebuild_beat"))
        rebuilding = (
            rebuild is not None
            and rebuild.error is None
            and beat is not None
            and (datetime.now(UTC) - beat).total_seconds() < REBUILD_STALE_SECONDS
        )
        state: State
        if failure is not None:
            state = "stalled"
        elif rebuilding:
            state = "rebuilding"
        elif lag_events:
            state = "catching_up"
        else:
            state = "running"
        return ProjectionStatus(
            name=p.name,
            store=self.read.dialect,
            state=state,
            policy="skip" if row.get("policy") == "skip" else "stop",
            position=position,
            head=head,
            lag_events=lag_events,
            lag_seconds=lag_seconds,
            generation=int(row.get("generation") or 0),
            dead_letters=int(row.get("dead_letters") or 0),
            last_error=failure,
            rebuild=rebuild,
        )

    def set_policy(self, name: str, policy: Policy) -> ProjectionStatus:
        self.projection(name)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        with self.read.write(None) as sql:
            sql.execute("UPDATE gbserver_projections SET policy = ? WHERE name = ?", (policy, name))
        return self.status(name)

    # --- dead letters --------------------------------------------------------------------

    def dead_letters(self, name: str, limit: int, offset: int) -> Page[DeadLetter]:
        self.projection(name)
        with self.read.read() as sql:
            sql.execute(
                "SELECT COUNT(*) AS n FROM gbserver_dead_letters WHERE projection = ?", (name,)
            )
            counted = sql.fetchone()
            sql.execute(
                "SELECT * FROM gbserver_dead_letters WHERE projection = ?"
                " ORDER BY notification_id, id LIMIT ? OFFSET ?",
                (name, limit, offset),
            )
            rows = sql.fetchall()
        found = [_dead_letter(r) for r in rows]
        return page(found, int(counted["n"]) if counted else 0, limit, offset)

    def dead_letter(self, name: str, letter_id: str) -> DeadLetter | None:
        self.projection(name)
        with self.read.read() as sql:
            sql.execute(
                "SELECT * FROM gbserver_dead_letters WHERE projection = ? AND id = ?",
                (name, letter_id),
            )
            row = sql.fetchone()
        return None if row is None else _dead_letter(row)

    def retry(self, name: str, letter_id: str) -> DeadLetter | None:
        """Applies a dead letter's event again (after a fix): gone from the list when it
        applies; DeadLetterFailed (recorded with the new error) when it fails again."""
        projection = self.projection(name)
        letter = self.dead_letter(name, letter_id)
        if letter is None:
            return None
        found = self.events.notifications(letter.event_id - 1, 1, ())
        if not found or found[0].id != letter.event_id:
            raise DeadLetterFailed(f"event {letter.event_id} is not in the log")
        try:
            projection.apply_again(self.events.decode(found[0]))
        except Exception as e:  # noqa: BLE001 - reported to the operator, kept as a dead letter
            error = describe(e)
            with self.read.write(None) as sql:
                sql.execute(
                    "UPDATE gbserver_dead_letters SET error = ?, retries = retries + 1,"
                    " recorded_at = ? WHERE id = ?",
                    (error, now_text(), letter_id),
                )
            raise DeadLetterFailed(error) from e
        with self.read.write(None) as sql:
            sql.execute("DELETE FROM gbserver_dead_letters WHERE id = ?", (letter_id,))
        return letter

    # --- online rebuild ------------------------------------------------------------------

    def _lock(self, name: str) -> Lock:
        return lock_for(self.settings, f"rebuild {name}")

    def start_rebuild(self, name: str) -> None:
        """Starts an online rebuild in a thread of this process (the admin API's)."""
        self.projection(name)
        lock = self._lock(name)
        if not lock.acquire():
            raise RebuildRunning(f"a rebuild of {name} is already running")
        thread = threading.Thread(
            target=self._rebuild_quietly, args=(name, lock), name=f"rebuild-{name}", daemon=True
        )
        self._running[name] = thread
        thread.start()

    def _rebuild_quietly(self, name: str, lock: Lock) -> None:
        try:
            self._rebuild(name, lambda *_: None)
        except Exception:  # noqa: BLE001 - recorded in the control row; the API reports it
            log.exception("online rebuild of %s failed", name)
        finally:
            lock.release()
            self._running.pop(name, None)

    def rebuild(self, name: str, progress: Callable[[int, int], None]) -> int:
        """Rebuilds one projection online (`gbserver rebuild`); answers events applied."""
        self.projection(name)
        lock = self._lock(name)
        if not lock.acquire():
            raise RebuildRunning(f"a rebuild of {name} is already running")
        try:
            return self._rebuild(name, progress)
        finally:
            lock.release()

    def _report(self, name: str, **fields: Any) -> None:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self.read.write(None) as sql:
            sql.execute(
                f"UPDATE gbserver_projections SET {assignments} WHERE name = ?",
                (*fields.values(), name),
            )

    def _rebuild(self, name: str, progress: Callable[[int, int], None]) -> int:
        live = self.projection(name)
        policy = self.status(name).policy
        started = now_text()
        self._report(
            name,
            rebuild_started=started,
            rebuild_beat=started,
            rebuild_position=0,
            rebuild_head=self.events.max_notification_id(),
            rebuild_error=None,
        )
        shadow_store = self.read.shadow(name)
        try:
            shadow = type(live)(shadow_store)
            with shadow_store.write(None) as sql:
                sql.execute(
                    "UPDATE gbserver_projections SET policy = ? WHERE name = ?", (policy, name)
                )
            replay = _Replay(self.events, shadow, shadow_store, progress, self._beat(name))
            while replay.catch_up(stop_within=CLOSE_ENOUGH):
                pass
            for attempt in range(1, SWAP_ATTEMPTS + 1):
                try:
                    position = self.read.swap(name, live.tables, shadow_store, replay.to_head)
                    break
                except SwapBusy:
                    if attempt == SWAP_ATTEMPTS:
                        raise
                    log.info("rebuild of %s: swap busy, attempt %d", name, attempt)
                    time.sleep(0.1 * attempt)
        except Exception as e:
            self._report(name, rebuild_error=describe(e), rebuild_beat=now_text())
            self.read.discard(shadow_store)
            raise
        shadow_store.close()
        self.read.discard(shadow_store)
        self._report(
            name,
            rebuild_started=None,
            rebuild_beat=None,
            rebuild_position=None,
            rebuild_head=None,
            rebuild_error=None,
        )
        log.info("rebuilt %s online: %d events applied, at %d", name, replay.applied, position)
        return replay.applied

    def _beat(self, name: str) -> Callable[[int, int], None]:
        last = [0.0]

        def beat(position: int, head: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                self._report(
                    name, rebuild_beat=now_text(), rebuild_position=position, rebuild_head=head
                )

        return beat


class _Replay:
    """Replays the log into a shadow projection, from the start, in batches."""

    def __init__(
        self,
        events: EventStoreAdapter,
        projection: Projection,
        store: ShadowStore,
        progress: Callable[[int, int], None],
        beat: Callable[[int, int], None],
    ) -> None:
        self.events = events
        self.projection = projection
        self.store = store
        self.progress = progress
        self.beat = beat
        self.position = 0
        self.applied = 0

    def catch_up(self, stop_within: int = 0) -> bool:
        """Applies what the log holds now; True when more than `stop_within` events
        arrived meanwhile (go round again before swapping)."""
        head = self.events.max_notification_id()
        while True:
            found = self.events.notifications(self.position, REPLAY_BATCH, self.projection.topics)
            mine = [(self.events.decode(n), Tracking(APP_NAME, n.id)) for n in found]
            if mine:
                self.projection.process_batch(mine)
                self.applied += len(mine)
                self.position = mine[-1][1].notification_id
            if len(found) < REPLAY_BATCH:
                break
            self.progress(self.position, head)
            self.beat(self.position, head)
        self.position = max(self.position, head)
        self.progress(self.position, head)
        self.beat(self.position, head)
        return self.events.max_notification_id() - head > stop_within

    def to_head(self) -> int:
        """Inside the swap: everything up to the log's head, as the shadow's position."""
        self.catch_up()
        return self.position


def _dead_letter(row: Row) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        projection=row["projection"],
        event_id=int(row["notification_id"]),
        topic=row["topic"],
        aggregate_id=row["aggregate_id"],
        aggregate_version=int(row["aggregate_version"]),
        error=row["error"],
        recorded_at=row["recorded_at"],
        retries=int(row["retries"]),
    )
