"""The scaled feed: a relay publishes the notification log to Kafka; projectors consume it.

The event store is the outbox. The relay reads the log after its recorded position, sends
each notification keyed by aggregate id (so one aggregate's events stay in order in one
partition) through an idempotent producer with acks=all, and records its position only once
Kafka has acknowledged the whole batch: a restart resends at most one batch, never skips.

One relay publishes a topic at a time: it holds a lock keyed by the topic (a PostgreSQL
session-level advisory lock, or a file lock beside a SQLite store) on a connection of its
own, so that it is released when its process dies; any other relay stands by, trying to take
it over twice a second. The active relay reports a heartbeat (time, position, last error) in
the read store, which is how every process (an API with `--no-workers` too) knows whether
the feed is moving: see `FeedMonitor`. With each batch it also records, per projection and
partition, the newest notification it published there (`FeedState.record`): how far each
projection must get to hold the whole log (`Partitioned.horizon`).

Projectors form a consumer group. A partition carries an ordered subsequence of the log, so
a projection keeps one position per partition (`tasks:p3`), written in the same transaction
as its tables; an event at or below that position (or below the projection's global
position, which `gbserver rebuild` writes) is a redelivery and is skipped. Offsets are
committed to Kafka after the read store, so a crash between the two only redelivers.

Sizes: an event is at most commands.ports.MAX_EVENT_BYTES (encoded state). A message
carries it as msgpack (raw bytes, no base64), gzip-compressed in batches; the producer, the
topic (`max.message.bytes`, set when the topic is created or found lower), the consumer and
the broker (scripts/services, docker-compose.yml) all take records of MESSAGE_MAX_BYTES, far
above the largest event, so no event the store accepted can stop the feed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Notification, Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import InvalidSessionTimeoutError, KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from commands.ports import MAX_EVENT_BYTES, StoreUnreachable
from infra.config import Settings
from infra.eventstore import APP_NAME, EventStoreAdapter, store_errors
from infra.locks import Lock, LockLost, lock_for
from infra.readstore import PostgresReadStore, SqlCursor, SQLiteReadStore
from infra.runner import LogSignal, Positions
from infra.worker import Worker
from projections.core import Projection, Rebuilt

log = logging.getLogger("gbserver.kafka")

RELAY_BATCH = 500
POLL_SECONDS = 1.0
KAFKA_TIMEOUT_MS = 5000  # to reach a broker at all (kafka-python waits 30 s by default)
WAIT_LIMIT = 2.0  # seconds the relay may wait on Kafka before it reports a problem

# The largest record the relay sends (the producer's max_request_size). An event's message is
# its encoded state plus a few hundred bytes (see Message); the bound leaves room for events
# recorded before MAX_EVENT_BYTES existed (request bodies were already capped at 1 MiB).
MESSAGE_MAX_BYTES = 4 * 1024 * 1024
# What the topic (max.message.bytes), the broker (message.max.bytes) and each partition's
# fetch take: a record batch of one such record, with its framing.
BATCH_MAX_BYTES = MESSAGE_MAX_BYTES + 64 * 1024
assert MAX_EVENT_BYTES + 4096 < MESSAGE_MAX_BYTES

# Projector group membership: a projector that dies (SIGKILL, lost host) keeps its partitions
# until its session times out. 3 s needs the broker's group.min.session.timeout.ms lowered
# (scripts/services and docker-compose.yml do); a broker keeping the default minimum (6 s)
# refuses it, and the projector joins with FALLBACK_SESSION_MS instead.
SESSION_MS = 3000
FALLBACK_SESSION_MS = 6000

# The relay's heartbeat, and how the other processes read it.
BEAT_SECONDS = 0.5  # how often the active relay reports
STANDBY_SECONDS = 0.5  # how often a standby relay tries to take over
STALE_SECONDS = 3.0  # a report older than this: the relay is gone, paused or hung
STALL_SECONDS = 2.0  # log ahead of a relay position that has not moved for this long: stuck
MONITOR_TTL = 0.25  # how long one reading of the shared state answers `feed_ok`
# PostgreSQL ends the session of a relay that stays silent this long (paused, hung), which
# releases its lock to a standby; the heartbeat keeps a live relay's session busy.
LOCK_IDLE_TIMEOUT = "6s"


class Message(msgspec.Struct, frozen=True):
    """A notification as it travels on the topic."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def encode_message(n: Notification) -> bytes:
    """msgpack: the state travels as raw bytes (JSON would base64 it, a third larger)."""
    return msgspec.msgpack.encode(
        Message(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
    )


def decode_message(value: bytes) -> Message:
    """Reads both encodings: msgpack, and the JSON that relays wrote before it (a JSON
    object starts with `{`; a msgpack map of five fields with 0x85)."""
    if value[:1] == b"{":
        return msgspec.json.decode(value, type=Message)
    return msgspec.msgpack.decode(value, type=Message)


def partition_for(aggregate_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), so any client agrees with us."""
    hashed: int = murmur2(aggregate_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Creates the topic with our partition count and message size, or checks an existing
    one: a partition count that differs is refused, a message size below ours is raised."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="gbserver-admin",
        bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
        request_timeout_ms=2 * KAFKA_TIMEOUT_MS,
    )
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                {
                    topic: {
                        "num_partitions": partitions,
                        "replication_factor": 1,
                        "configs": {"max.message.bytes": str(BATCH_MAX_BYTES)},
                    }
                }
            )
        described = admin.describe_topics([topic])
        found = len(described[0]["partitions"]) if described else 0
        if found == partitions:
            try:
                _ensure_message_size(admin, topic)
            except (KafkaError, RuntimeError) as e:  # e.g. no ALTER_CONFIGS permission
                log.warning(
                    "topic %s may refuse large events: %s (set its max.message.bytes to %d)",
                    topic,
                    e,
                    BATCH_MAX_BYTES,
                )
    finally:
        admin.close()
    if found != partitions:
        raise RuntimeError(
            f"Kafka topic {topic} has {found} partitions, GB_KAFKA_PARTITIONS says {partitions}"
        )


def _ensure_message_size(admin: KafkaAdminClient, topic: str) -> None:
    """A topic made elsewhere (auto-created, or by an older relay) takes the broker's
    message.max.bytes, 1 MiB by default: raise it to ours."""
    key = "max.message.bytes"
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, [key])
    configs = admin.describe_configs([resource], config_filter="all")
    entry = configs.get("topic", {}).get(topic, {}).get(key, {})
    current = int(entry.get("value") or 0)
    if current >= BATCH_MAX_BYTES:
        return
    result = admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {key: str(BATCH_MAX_BYTES)})],
        raise_on_unknown=False,
    )
    outcome = result.get("topic", {}).get(topic)
    if outcome != "OK":
        raise RuntimeError(
            f"cannot raise {key} of Kafka topic {topic} to {BATCH_MAX_BYTES}: {outcome}"
        )
    log.info("raised %s of topic %s from %d to %d", key, topic, current, BATCH_MAX_BYTES)


# --- shared feed state, in the read store --------------------------------------------------

FEED_SCHEMA = (
    # The active relay's heartbeat, one row per topic; `beat` in seconds on the database's
    # clock, so that processes on different hosts compare it with one clock.
    "CREATE TABLE IF NOT EXISTS gbserver_feed_relay ("
    " feed TEXT PRIMARY KEY, owner TEXT NOT NULL, beat DOUBLE PRECISION NOT NULL,"
    " position BIGINT NOT NULL, error TEXT)",
    # Per projection and partition ("tasks:p3"), the newest notification published there
    # that the projection reads; written with the relay's position, in its transaction.
    "CREATE TABLE IF NOT EXISTS gbserver_feed_heads ("
    " feed TEXT NOT NULL, name TEXT NOT NULL, position BIGINT NOT NULL,"
    " PRIMARY KEY (feed, name))",
)

_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(frozen=True)
class RelayReport:
    owner: str
    position: int
    error: str | None
    age: float  # seconds since the report


class FeedState:
    """The feed's shared state for one topic: the relay's heartbeat and partition heads."""

    def __init__(self, read: SQLiteReadStore | PostgresReadStore, topic: str) -> None:
        self.read = read
        self.topic = topic
        self.relay_name = f"relay:{topic}"  # the relay's tracking position
        self._now = _NOW[read.dialect]
        self._ready = False

    def ensure(self) -> None:
        """Creates the tables (once per process; idempotent across processes)."""
        if not self._ready:
            self.read.migrate(FEED_SCHEMA)
            self._ready = True

    @contextlib.contextmanager
    def _write(self) -> Iterator[SqlCursor]:
        self.ensure()
        with store_errors(self.read.breaker), self.read.datastore.transaction(commit=True) as c:
            yield SqlCursor(c, self.read.dialect)

    def beat(self, owner: str, position: int, error: str | None) -> None:
        with self._write() as sql:
            sql.execute(
                "INSERT INTO gbserver_feed_relay (feed, owner, beat, position, error)"
                f" VALUES (?, ?, {self._now}, ?, ?)"
                " ON CONFLICT (feed) DO UPDATE SET owner = excluded.owner,"
                " beat = excluded.beat, position = excluded.position, error = excluded.error",
                (self.topic, owner, position, error),
            )

    def report(self) -> RelayReport | None:
        self.ensure()
        with self.read.read() as sql:
            sql.execute(
                f"SELECT owner, position, error, {self._now} - beat AS age"
                " FROM gbserver_feed_relay WHERE feed = ?",
                (self.topic,),
            )
            row = sql.fetchone()
        if row is None:
            return None
        return RelayReport(row["owner"], int(row["position"]), row["error"], float(row["age"]))

    def record(self, position: int, heads: Mapping[str, int]) -> None:
        """The relay's position and the heads it published, in one transaction."""
        self.ensure()
        with self.read.write(Tracking(self.relay_name, position)) as sql:
            if heads:
                sql.executemany(
                    "INSERT INTO gbserver_feed_heads (feed, name, position) VALUES (?, ?, ?)"
                    " ON CONFLICT (feed, name) DO UPDATE SET position = excluded.position"
                    " WHERE gbserver_feed_heads.position < excluded.position",
                    [(self.topic, name, nid) for name, nid in sorted(heads.items())],
                )

    def published(self) -> tuple[int, dict[str, int]]:
        """How far the relay has published, and the heads up to there (one snapshot)."""
        self.ensure()
        with self.read.read() as sql:
            sql.execute(
                "SELECT MAX(notification_id) AS position"
                f" FROM {self.read._tracking_table()} WHERE application_name = ?",
                (self.relay_name,),
            )
            row = sql.fetchone()
            sql.execute(
                "SELECT name, position FROM gbserver_feed_heads WHERE feed = ?", (self.topic,)
            )
            heads = {r["name"]: int(r["position"]) for r in sql.fetchall()}
        position = int(row["position"]) if row and row["position"] is not None else 0
        return position, heads


class FeedMonitor:
    """Whether the feed is moving, for any process: read from the relay's heartbeat.

    Down when no relay has reported, when the last report is stale (the relay died, was
    paused or hangs), when the relay reports an error (Kafka refuses it, or a batch has
    waited too long), or when the log has stayed ahead of a relay position that did not move
    for STALL_SECONDS. One reading serves callers for MONITOR_TTL.
    """

    def __init__(
        self,
        feed: FeedState,
        log_end: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feed = feed
        self.log_end = log_end
        self.clock = clock
        self._lock = threading.Lock()
        self._checked = -MONITOR_TTL
        self._problem: str | None = None
        self._still_at: int | None = None  # a relay position seen behind the log...
        self._still_since = 0.0  # ...since then, unmoved

    def ok(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        with self._lock:
            now = self.clock()
            if now - self._checked >= MONITOR_TTL:
                self._problem = self._assess(now)
                self._checked = now
            return self._problem

    def _assess(self, now: float) -> str | None:
        try:
            report = self.feed.report()
            end = int(self.log_end())
        except Exception as e:  # noqa: BLE001 - an unreadable state is a down feed, not a 500
            return f"the feed's state cannot be read: {e}"
        if report is None:
            return "no relay has reported"
        if report.age > STALE_SECONDS:
            return f"the relay ({report.owner}) last reported {report.age:.1f} s ago"
        if report.error:
            return f"the relay ({report.owner}) reports: {report.error}"
        if report.position >= end:
            self._still_at = None
        elif self._still_at != report.position:
            self._still_at, self._still_since = report.position, now
        elif now - self._still_since > STALL_SECONDS:
            return (
                f"the relay ({report.owner}) has stayed at {report.position}, behind the log"
                f" at {end}, for {now - self._still_since:.1f} s"
            )
        return None


class Partitioned:
    """Positions per Kafka partition: `tasks:p3`."""

    def __init__(self, partitions: int, feed: FeedState | None = None) -> None:
        self.partitions = partitions
        self.feed = feed

    def key(self, projection: str, aggregate_id: str) -> str:
        return f"{projection}:p{partition_for(aggregate_id, self.partitions)}"

    def horizon(self, names: Collection[str], log_end: int) -> dict[str, int] | None:
        """The partition positions these projections must reach to hold the log up to
        log_end; None while the relay has not published that far (it cannot tell yet)."""
        if self.feed is None:
            return None
        published, heads = self.feed.published()
        if published < log_end:
            return None
        return {k: nid for k, nid in heads.items() if k.split(":", 1)[0] in names}


def relay_lock(settings: Settings) -> Lock:
    """One relay publishes a topic; a PostgreSQL session silent for LOCK_IDLE_TIMEOUT (a
    paused or hung relay) loses it to a standby."""
    return lock_for(settings, f"relay {settings.kafka_topic}", LOCK_IDLE_TIMEOUT)


# --- workers -------------------------------------------------------------------------------


class _FeedWorker(Worker):
    """A worker of the Kafka feed: Kafka and the database being out of reach is an outage."""

    logger = log

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, StoreUnreachable | KafkaError | OSError)


class Relay(_FeedWorker):
    name = "kafka-relay"

    def __init__(
        self,
        events: EventStoreAdapter,
        read: SQLiteReadStore | PostgresReadStore,
        signal: LogSignal,
        bootstrap: str,
        topic: str,
        partitions: int,
        *,
        lock: Lock,
        readers: Mapping[str, Collection[str]],
    ) -> None:
        super().__init__()
        self.events = events
        self.read = read
        self.signal = signal
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.feed = FeedState(read, topic)
        self.tracking_name = self.feed.relay_name
        self.readers = {name: frozenset(topics) for name, topics in readers.items()}
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.active = False  # holds the lock (else stands by)
        self.position = 0
        self._lock = lock
        self._lost = threading.Event()
        self._producer: KafkaProducer | None = None
        self._waiting_since: float | None = None  # connecting to Kafka, or publishing
        self._beat_wake = threading.Event()
        self._beat_failed = False
        self._beats = threading.Thread(target=self._beat_loop, name="kafka-relay-beat", daemon=True)

    def problem(self) -> str | None:
        """What keeps this relay from publishing: a failure, or Kafka keeping it waiting
        (to connect, or to take a batch) for over WAIT_LIMIT seconds."""
        if self.error is not None:
            return self.error
        started = self._waiting_since
        if started is not None and (waited := time.monotonic() - started) >= WAIT_LIMIT:
            return f"waiting {waited:.1f} s for Kafka at {self.bootstrap}"
        return None

    @property
    def stalled(self) -> bool:
        """Never a read model's stall: the feed's health is the `kafka` component."""
        return False

    @property
    def healthy(self) -> bool:
        return self.problem() is None

    def start(self) -> None:
        self.feed.ensure()
        super().start()
        self._beats.start()

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        self._beat_wake.set()
        if self._beats.is_alive():
            self._beats.join(timeout=5)
        self.active = False
        self._lock.release()  # a standby takes over at once

    def _wake(self) -> None:
        self.signal.wake_all()

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        self._waiting_since = time.monotonic()
        try:
            yield
        finally:
            self._waiting_since = None

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            with self._waiting():
                ensure_topic(self.bootstrap, self.topic, self.partitions)
                self._producer = self._new_producer()
        return self._producer

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
            client_id="gbserver-relay",
            acks="all",
            enable_idempotence=True,
            max_in_flight_requests_per_connection=5,
            linger_ms=2,
            compression_type="gzip",
            max_request_size=MESSAGE_MAX_BYTES,
            max_block_ms=5000,
            request_timeout_ms=10000,
            delivery_timeout_ms=30000,
        )

    def _step(self) -> None:
        if not self._lock.acquire():
            self.active = False
            self.ready.set()  # standing by is taking part
            self._stop.wait(STANDBY_SECONDS)
            return
        if not self.active or self._lost.is_set():  # (again) the publisher: from the top
            self._lost.clear()
            self.position = self.read.max_tracking_id(self.tracking_name) or 0
            self.active = True
            log.info("relay active for %s from position %d", self.topic, self.position)
            self._beat()  # so that every process sees at once who publishes, and where
        self.ready.set()
        try:
            producer = self._connect()
            position = self.read.max_tracking_id(self.tracking_name) or 0
            self.position = position
            while not self._stop.is_set():
                if self._lost.is_set():
                    raise LockLost("the heartbeat found the lock gone")
                end = self.events.max_notification_id()
                batch = self.events.notifications(position, RELAY_BATCH, ())
                if not batch:
                    self.signal.wait_beyond(end, (), POLL_SECONDS)
                    continue
                self._publish(producer, batch)
                self._lock.check()  # a relay that lost its lock records nothing
                self.feed.record(batch[-1].id, self._heads(batch))
                position = self.position = batch[-1].id
                self._recovered()
        except LockLost as e:
            # Not a failure: another relay publishes now (or will). Stand by.
            log.warning("relay for %s lost its lock (%s); standing by", self.topic, e)
            self.active = False
            self._close()
        except KafkaError:
            self._close()  # a fresh producer after an outage; the log resends from our position
            raise

    def _heads(self, batch: Sequence[Notification]) -> dict[str, int]:
        heads: dict[str, int] = {}
        for n in batch:
            partition = partition_for(str(n.originator_id), self.partitions)
            for name, topics in self.readers.items():
                if n.topic in topics:
                    heads[f"{name}:p{partition}"] = n.id  # ids ascend within a batch
        return heads

    def _publish(self, producer: KafkaProducer, batch: Sequence[Notification]) -> None:
        with self._waiting():
            self._send_all(producer, batch)

    def _send_all(self, producer: KafkaProducer, batch: Sequence[Notification]) -> None:
        futures = [
            producer.send(
                self.topic,
                key=str(n.originator_id).encode(),
                value=encode_message(n),
                partition=partition_for(str(n.originator_id), self.partitions),
            )
            for n in batch
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=0)  # raises the send's error, if any

    def _beat_loop(self) -> None:
        while not self._stop.is_set():
            if self.active:
                self._beat()
            self._beat_wake.wait(BEAT_SECONDS)
            self._beat_wake.clear()

    def _beat(self) -> None:
        """Reports this relay's state, while it holds the lock (a relay that lost it stays
        silent: its last report goes stale, or its successor's replaces it)."""
        try:
            self._lock.check()
        except LockLost:
            self._lost.set()
            self.signal.wake_all()  # the publishing loop sees it now
            return
        try:
            self.feed.beat(self.owner, self.position, self.problem())
        except Exception as e:  # noqa: BLE001 - the database is down: others see the beat age
            if not self._beat_failed:
                log.warning("relay heartbeat failed: %s", e)
            self._beat_failed = True
        else:
            self._beat_failed = False


class _Forget(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops in-memory positions of partitions that move: another worker may advance them."""

    def __init__(self, at: dict[str, int], joined: threading.Event) -> None:
        self.at = at
        self.joined = joined  # joined once: the projector takes part (its `ready`)
        self.member = False  # holds an assignment now (possibly of no partition)

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.at.clear()
        self.member = False

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.at.clear()
        self.member = True
        self.joined.set()
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class KafkaProjector(_FeedWorker):
    name = "kafka-projector"
    # A rebuild swapped a projection's tables in: rejoin and read the positions again.
    quiet = (Rebuilt,)

    def __init__(
        self,
        projections: Sequence[Projection],
        events: EventStoreAdapter,
        positions: Positions,
        bootstrap: str,
        topic: str,
        group: str,
        partitions: int,
    ) -> None:
        super().__init__()
        self.partitions = partitions
        self.projections = list(projections)
        self.events = events
        self.positions = positions
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.session_ms = SESSION_MS
        self._consumer: KafkaConsumer | None = None
        self._listener: _Forget | None = None
        self._at: dict[str, int] = {}  # "tasks:p3" -> last applied notification id

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def _connect(self) -> KafkaConsumer:
        if self._consumer is None:
            # Subscribing to a topic that does not exist yet would find it only at the next
            # metadata refresh (minutes): create it first, as the relay does.
            ensure_topic(self.bootstrap, self.topic, self.partitions)
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
                client_id=f"gbserver-projector-{self.group}",
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=500,
                max_partition_fetch_bytes=BATCH_MAX_BYTES,
                session_timeout_ms=self.session_ms,
                heartbeat_interval_ms=self.session_ms // 3,
                max_poll_interval_ms=300000,
            )
            self._listener = _Forget(self._at, self.ready)
            self._consumer.subscribe([self.topic], listener=self._listener)
            log.info("joining group %s with a %d ms session timeout", self.group, self.session_ms)
        return self._consumer

    def _position(self, projection: Projection, partition: int) -> int:
        key = f"{projection.name}:p{partition}"
        if key not in self._at:
            view = projection.view
            self._at[key] = max(
                view.max_tracking_id(key) or 0, view.max_tracking_id(projection.name) or 0
            )
        return self._at[key]

    def _step(self) -> None:
        try:
            for projection in self.projections:  # before any position is read
                projection.load_generation()
            consumer = self._connect()
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=int(POLL_SECONDS * 1000))
                for tp, records in sorted(polled.items(), key=lambda kv: kv[0].partition):
                    self._apply(tp, records)
                if polled:
                    consumer.commit()
                if polled or self._caught_up(consumer):
                    # Not on an empty poll while rejoining after a failure: the event that
                    # failed has not been applied yet, and health reads `error`.
                    self._recovered()
        except InvalidSessionTimeoutError:
            self._at.clear()
            self._close()
            if self.session_ms >= FALLBACK_SESSION_MS:
                raise
            log.warning(
                "the broker refuses a %d ms session timeout (its group.min.session.timeout.ms"
                " is higher); joining with %d ms",
                self.session_ms,
                FALLBACK_SESSION_MS,
            )
            self.session_ms = FALLBACK_SESSION_MS
        except Exception:
            self._at.clear()  # positions are re-read from the read store after a failure
            self._close()
            raise

    def _caught_up(self, consumer: KafkaConsumer) -> bool:
        """True when we are a member of the group and at the end of each partition we hold."""
        if self._listener is None or not self._listener.member:
            return False
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None or consumer.position(tp) < high:
                return False
        return True

    def _apply(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        decoded = []
        for record in records:
            message = decode_message(record.value)
            notification = Notification(
                id=message.id,
                originator_id=UUID(message.originator_id),
                originator_version=message.originator_version,
                topic=message.topic,
                state=message.state,
            )
            decoded.append((message, notification))
        for projection in self.projections:
            # A partition carries ids in increasing order, except where a restarted relay
            # resent the tail of a batch: anything not above the last id seen is a repeat.
            last = self._position(projection, tp.partition)
            batch = []
            for m, n in decoded:
                if m.id <= last:
                    continue
                last = m.id
                if m.topic in projection.topics:
                    batch.append((self.events.decode(n), Tracking(APP_NAME, m.id)))
            key = f"{projection.name}:p{tp.partition}"
            if batch:
                projection.process_batch(batch, tracking_name=key)
            # Events of other topics advance the partition too, as far as writers care.
            self._at[key] = last
            self.positions.advanced(key, last)
