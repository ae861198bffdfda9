"""The write side: eventsourcing's Application over SQLite (embedded) or PostgreSQL (scaled)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, cast
from uuid import UUID

import psycopg
import psycopg_pool
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    AggregateRecorder,
    EventStore,
    IntegrityError,
    InterfaceError,
    Mapper,
    Notification,
    OperationalError,
    Recording,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresFactory,
)
from eventsourcing.utils import get_topic, resolve_topic

from commands.ports import (
    MAX_EVENT_BYTES,
    ConcurrencyConflict,
    EventTooLarge,
    NotFound,
    Saved,
    StoreUnavailable,
    StoreUnreachable,
)
from domain.paper import PaperDocument
from domain.sessions import Memory, Session
from infra.config import Settings
from infra.transcoder import DataTranscoder

APP_NAME = "gbserver"

log = logging.getLogger("gbserver")


def persistence_env(settings: Settings, *, purpose: str = "events") -> dict[str, str]:
    """The library's settings for one of our stores ('events' or 'read')."""
    if settings.uses_postgres:
        env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", **settings.postgres_env()}
        if purpose == "events":
            env["APPLICATION_RECORDER_TOPIC"] = get_topic(PostgresEventRecorder)
        return env
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(settings.data_dir / f"{purpose}.sqlite"),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


def connect(settings: Settings) -> psycopg.Connection[Any]:
    """A connection of our own, outside the library's pools (raises psycopg.Error)."""
    env = settings.postgres_env()
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
        autocommit=True,
    )


# pg_advisory_lock key ("gbserver" in ASCII) held while tables are created: PostgreSQL's
# CREATE TABLE/TYPE IF NOT EXISTS is not safe against a concurrent creator (the loser gets
# a unique violation on pg_type), which two processes starting on a new database hit.
SCHEMA_LOCK = 0x6762736572766572


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialises schema creation across processes (PostgreSQL only; SQLite locks itself).

    Connecting first also turns the pool's opaque "couldn't get a connection after N sec"
    into the server's own reason (wrong password, no such database, refused...).
    """
    if not settings.uses_postgres:
        yield
        return
    env = settings.postgres_env()
    where = (
        f"{env['POSTGRES_USER']}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        f"/{env['POSTGRES_DBNAME']}"
    )
    try:
        conn = connect(settings)
    except psycopg.Error as e:
        raise StoreUnreachable(f"cannot connect to PostgreSQL {where}: {e}") from e
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        yield
    finally:
        conn.close()  # ends the session, which releases the lock


# --- PostgreSQL outages -----------------------------------------------------------------
#
# Left to the library, an operation during an outage takes about a minute to fail: its
# recorders retry it up to 10 times, and each try waits the pool's whole timeout for a
# connection that never comes. Afterwards the pool reconnects on an exponential backoff
# (1, 2, 4... s), so recovery took as long again. Instead:
#
# - each library operation is tried once (`single_attempt`); the pool's wait for a
#   connection (POSTGRES_CONNECT_TIMEOUT, see Settings.postgres_env) bounds it;
# - the first connection failure opens a `Breaker` shared by both stores: operations then
#   fail at once with StoreUnavailable (503 + Retry-After) without touching the pools, while
#   one background thread tries a fresh connection every PROBE_INTERVAL;
# - when the probe connects, the pools' connections (dead if PostgreSQL restarted) are
#   replaced and the breaker closes; the pools give up a failed reconnection after
#   RECONNECT_TIMEOUT rather than backing off for minutes, so the next request reconnects
#   at once.
#
# A write that failed this way was not recorded, or was committed just before the
# connection died (the reply was lost): it is then in the log whole, like any other
# (one transaction), and projected as usual. A client that must not create twice retries
# with an Idempotency-Key (commands.idempotency).

PROBE_INTERVAL = 0.5  # seconds between probes while PostgreSQL is unreachable
RECONNECT_TIMEOUT = 1.0  # seconds a pool keeps retrying one reconnection before giving up
LIBPQ_CONNECT_TIMEOUT = 2  # seconds for one connection attempt (libpq's minimum is 2)

# SQLSTATEs that say the server went away rather than that a statement failed: connection
# exceptions (class 08) and the server shutting down or starting up (57P01-57P03). Errors
# raised by the client itself (no SQLSTATE: connection lost, pool timeout) count too.
_SERVER_GONE = ("08", "57P01", "57P02", "57P03")


def is_connection_failure(error: BaseException) -> bool:
    """True when a library persistence error means PostgreSQL is unreachable."""
    cause = error.__cause__
    if isinstance(cause, psycopg_pool.PoolTimeout):
        return True
    if not isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
        return False  # SQLite's errors, or a statement's own failure
    return cause.sqlstate is None or cause.sqlstate.startswith(_SERVER_GONE)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def single_attempt(method: Callable[..., Any]) -> Callable[..., Any]:
    """A library recorder method without its @retry (10 attempts, 0.2 s apart).

    Besides the minute it adds during an outage, retrying an insert whose COMMIT reached
    the server but whose reply was lost would fail on the unique (originator_id, version)
    and answer 409 for a write that happened. Once, then 503, is simpler to reason about.
    """
    unwrapped: Callable[..., Any] = inspect.unwrap(method)
    return unwrapped


class PostgresEventRecorder(PostgresApplicationRecorder):
    """The library's recorder, each operation tried once (APPLICATION_RECORDER_TOPIC)."""

    insert_events = single_attempt(PostgresApplicationRecorder.insert_events)
    select_events = single_attempt(PostgresApplicationRecorder.select_events)
    select_notifications = single_attempt(PostgresApplicationRecorder.select_notifications)
    max_notification_id = single_attempt(PostgresApplicationRecorder.max_notification_id)


class PostgresSnapshotRecorder(PostgresAggregateRecorder):
    """The library's snapshot recorder, each operation tried once (like the events')."""

    insert_events = single_attempt(PostgresAggregateRecorder.insert_events)
    select_events = single_attempt(PostgresAggregateRecorder.select_events)


class Breaker:
    """Fails fast while PostgreSQL is unreachable; notices by itself when it is back."""

    def __init__(self, probe: Callable[[], None]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._down_since: float | None = None  # None: closed, operations go through
        self._reason = ""
        self._pools: list[psycopg_pool.ConnectionPool[Any]] = []

    def guard(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        """Tunes a store's pool for outages and renews it when PostgreSQL comes back."""
        # psycopg_pool's own settings, which the library does not expose: give up a failed
        # reconnection soon (the next request that needs a connection starts a new one),
        # and bound each attempt (a host that drops packets would otherwise hold one of the
        # pool's three workers for libpq's default of 130 s).
        pool.reconnect_timeout = RECONNECT_TIMEOUT
        if isinstance(pool.kwargs, dict):
            pool.kwargs.setdefault("connect_timeout", LIBPQ_CONNECT_TIMEOUT)
        with self._lock:
            self._pools = [p for p in self._pools if p is pool or not p.closed]
            if pool not in self._pools:
                self._pools.append(pool)

    def check(self) -> None:
        """Raises StoreUnavailable at once while open (a plain read: no lock to wait for)."""
        since = self._down_since
        if since is not None:
            raise StoreUnreachable(
                f"PostgreSQL unreachable for {time.monotonic() - since:.1f} s ({self._reason})"
            )

    def trip(self, reason: str) -> None:
        """Opens the breaker, unless open already, and starts probing."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self._reason = reason
        log.warning("PostgreSQL unreachable (%s); failing fast until it answers", reason)
        threading.Thread(target=self._probe_until_back, name="pg-probe", daemon=True).start()

    def _probe_until_back(self) -> None:
        failed = 0
        while True:
            try:
                self._probe()
                break
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                failed += 1
                self._reason = first_line(e)
            with self._lock:
                if self._pools and all(p.closed for p in self._pools):
                    return  # the stores were closed: nobody is waiting for PostgreSQL
            time.sleep(PROBE_INTERVAL)
        with self._lock:
            pools = list(self._pools) if failed else []
        for pool in pools:
            # PostgreSQL was down: the connections made before are dead. Replace them now
            # rather than let requests find out one by one (each costs a pre-ping and a
            # pause). psycopg_pool >= 3.3 drains; older ones check the idle connections.
            # (When the first probe connects, the trip was a pool timeout under load or a
            # single lost connection: the pool is left alone.)
            try:
                drain = getattr(pool, "drain", None)
                (drain or pool.check)()
            except Exception:  # noqa: BLE001 - a pool that cannot renew now will later
                log.warning("renewing a connection pool failed", exc_info=True)
        with self._lock:
            since, self._down_since = self._down_since, None
        down_for = time.monotonic() - since if since is not None else 0.0
        log.warning("PostgreSQL reachable again after %.1f s", down_for)


_breakers: dict[tuple[str, ...], Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(settings: Settings) -> Breaker | None:
    """The breaker of settings' PostgreSQL database, shared by its stores; None for SQLite."""
    if not settings.uses_postgres:
        return None
    env = settings.postgres_env()
    key = tuple(env[k] for k in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DBNAME"))
    key += (env["POSTGRES_USER"],)

    def probe() -> None:
        with connect(settings) as conn:
            conn.execute("SELECT 1")

    with _breakers_lock:
        return _breakers.setdefault(key, Breaker(probe))


@contextmanager
def store_errors(breaker: Breaker | None = None) -> Iterator[None]:
    """Turns the library's persistence errors into the ports' errors.

    With a breaker: fails at once while it is open, and opens it on a connection failure.
    """
    if breaker is not None:
        breaker.check()
    try:
        yield
    except IntegrityError as e:
        raise ConcurrencyConflict(str(e)) from e
    except (OperationalError, InterfaceError) as e:
        if breaker is not None and is_connection_failure(e):
            breaker.trip(first_line(e))
            raise StoreUnreachable(str(e)) from e
        raise StoreUnavailable(str(e)) from e


class BoundedMapper(Mapper[UUID]):
    """The library's mapper, refusing an event whose encoded state exceeds MAX_EVENT_BYTES.

    The bound is on the stored state: what the notification log stores and the Kafka relay
    publishes (the transcoder's JSON; gbserver configures no compressor or cipher).
    Application.save maps every event of a save before inserting any, so a refused event
    leaves nothing of its command behind. Snapshots are mapped by a plain Mapper: they are
    stored apart from the log, never published, and taken after the save has committed.
    """

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        if len(stored.state) > MAX_EVENT_BYTES:
            raise EventTooLarge(stored.topic, len(stored.state))
        return stored


# Aggregates whose streams grow long: a snapshot every SNAPSHOT_INTERVAL events, so that
# loading one reads its newest snapshot and the events after it, not the whole stream.
# Snapshots live in a table of their own (SQLite "stored_snapshots", PostgreSQL
# "gbserver_snapshots"): the notification log, the projections, their rebuilds and the
# Kafka relay never see them; paper history and past versions read the events themselves.
SNAPSHOT_INTERVAL = 50


@lru_cache
def code_stamp(aggregate_class: type[Any]) -> str:
    """What a snapshot of this class depends on: its module's source and the library.

    A snapshot is the aggregate's attributes as the code of its time left them; restored by
    newer code (an attribute added, a mutator changed) it would not match what replaying
    the events gives. Snapshots whose stamp differs are ignored, and the aggregate is
    loaded from its events until the next interval snapshots it again.
    """
    digest = hashlib.sha256(aggregate_class.__qualname__.encode())
    module = sys.modules.get(aggregate_class.__module__)
    source = getattr(module, "__file__", None)
    with suppress(OSError):  # no source to read: the name and the library's version count
        digest.update(Path(source).read_bytes() if source else b"")
    with suppress(importlib.metadata.PackageNotFoundError):
        digest.update(importlib.metadata.version("eventsourcing").encode())
    return digest.hexdigest()[:16]


class SnapshotMapper(Mapper[UUID]):
    """The library's mapper, stamping each snapshot with `code_stamp` of its aggregate."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        aggregate_class = resolve_topic(cast(Snapshot, domain_event).topic)
        object.__setattr__(domain_event, "code", code_stamp(aggregate_class))
        return super().to_stored_event(domain_event)


class SnapshotStore(EventStore[UUID]):
    """The snapshots' store: one that cannot be used (another code's, undecodable) is
    skipped, so the repository falls back on the events rather than failing the load."""

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[DomainEventProtocol[UUID]]:
        stored = self.recorder.select_events(
            originator_id=originator_id, gt=gt, lte=lte, desc=desc, limit=limit
        )
        for record in stored:
            try:
                snapshot = cast(Snapshot, self.mapper.to_domain_event(record))
                current = code_stamp(resolve_topic(snapshot.topic))
            except Exception:  # noqa: BLE001 - a snapshot is an optimisation
                log.warning("unreadable snapshot of %s skipped", originator_id, exc_info=True)
                continue
            if getattr(snapshot, "code", None) == current:
                yield snapshot


class GBApplication(Application[UUID]):
    name = APP_NAME
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Session: SNAPSHOT_INTERVAL,
        Memory: SNAPSHOT_INTERVAL,
        PaperDocument: SNAPSHOT_INTERVAL,
    }

    def construct_transcoder(self) -> Transcoder:
        """The library's JSON format and transcodings, user data never read as a type."""
        transcoder = DataTranscoder()
        self.register_transcodings(transcoder)  # the library's: UUID, Decimal, datetime
        return transcoder

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=BoundedMapper
        )

    def construct_snapshot_store(self) -> EventStore[UUID]:
        factory = self.factory
        recorder: AggregateRecorder
        if isinstance(factory, PostgresFactory):
            # factory.aggregate_recorder(purpose="snapshots"), tried once per operation
            recorder = PostgresSnapshotRecorder(
                datastore=factory.datastore,
                events_table_name=f"{factory.env.name.lower() or 'stored'}_snapshots",
            )
            if factory.env_create_table():
                recorder.create_table()
        else:
            recorder = factory.aggregate_recorder(purpose="snapshots")
        mapper = SnapshotMapper(
            transcoder=self.mapper.transcoder,
            compressor=self.mapper.compressor,
            cipher=self.mapper.cipher,
        )
        return SnapshotStore(mapper=mapper, recorder=recorder)

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # The save has committed: a snapshot that cannot be taken now (an outage, old
        # data) must not turn it into an error, nor skip the listeners; the aggregate
        # loads from its events meanwhile, and the next interval snapshots it again.
        try:
            super()._take_snapshots(processing_event)
        except Exception:  # noqa: BLE001 - a snapshot is an optimisation
            log.warning("taking a snapshot failed; it is retried later", exc_info=True)

    def __init__(self, settings: Settings) -> None:
        with schema_lock(settings):  # the library creates its tables here
            super().__init__(env=persistence_env(settings))
        self.breaker = breaker_for(settings)
        if self.breaker is not None:
            assert isinstance(self.recorder, PostgresEventRecorder)
            self.breaker.guard(self.recorder.datastore.pool)
        self._saved_listeners: list[Callable[[int, Mapping[str, int]], None]] = []
        self._lock = threading.Lock()

    def on_saved(self, listener: Callable[[int, Mapping[str, int]], None]) -> None:
        """Calls listener(last notification id, events per topic) after each save in this
        process (iterating the mapping gives the topics)."""
        with self._lock:
            self._saved_listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        if recordings:
            last = max(r.notification.id for r in recordings)
            topics = Counter(r.notification.topic for r in recordings)
            for listener in list(self._saved_listeners):
                listener(last, topics)


class EventStoreAdapter:
    """Implements commands.ports.EventStore on the application."""

    def __init__(self, app: GBApplication) -> None:
        self.app = app
        self.breaker = app.breaker

    def save(self, *aggregates: Any) -> Saved:
        with store_errors(self.breaker):
            recordings = self.app.save(*aggregates)
        return Saved(
            tuple(
                (r.notification.id, r.notification.topic, str(r.notification.originator_id))
                for r in recordings
            )
        )

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        try:
            with store_errors(self.breaker):
                return self.app.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(str(aggregate_id)) from None

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        with store_errors(self.breaker):
            return list(self.app.events.get(aggregate_id))

    def max_notification_id(self) -> int:
        with store_errors(self.breaker):
            return self.app.recorder.max_notification_id() or 0

    def notifications(
        self, after: int, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        with store_errors(self.breaker):
            return self.app.recorder.select_notifications(
                start=after, limit=limit, topics=topics, inclusive_of_start=False
            )

    def decode(self, notification: Notification) -> Any:
        return self.app.mapper.to_domain_event(notification)

    def decode_state(self, state: bytes) -> dict[str, Any]:
        data: dict[str, Any] = self.app.mapper.transcoder.decode(state)
        return data
