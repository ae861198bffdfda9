"""The scaled feed: a relay publishes the notification log to Kafka; projectors consume it.

The event store is the outbox. The relay reads the log after its recorded position, sends
each notification keyed by aggregate id (so one aggregate's events stay in order in one
partition) through an idempotent producer with acks=all, and records its position only once
Kafka has acknowledged the whole batch: a restart resends at most one batch, never skips.

Projectors form a consumer group. A partition carries an ordered subsequence of the log, so
a projection keeps one position per partition (`tasks:p3`), written in the same transaction
as its tables; an event at or below that position (or below the projection's global
position, which `gbserver rebuild` writes) is a redelivery and is skipped. Offsets are
committed to Kafka after the read store, so a crash between the two only redelivers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Notification, Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from infra.eventstore import APP_NAME, EventStoreAdapter
from infra.runner import LogSignal, Positions
from projections.core import Projection, ReadStore

log = logging.getLogger("gbserver.kafka")

RELAY_BATCH = 500
POLL_SECONDS = 1.0


class Message(msgspec.Struct, frozen=True):
    """A notification as it travels on the topic."""

    id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def partition_for(aggregate_id: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), so any client agrees with us."""
    hashed: int = murmur2(aggregate_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class Partitioned:
    """Positions per Kafka partition: `tasks:p3`."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def key(self, projection: str, aggregate_id: str) -> str:
        return f"{projection}:p{partition_for(aggregate_id, self.partitions)}"


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Creates the topic with our partition count, or checks an existing one has it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="gbserver-admin")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, partitions, 1)])
        described = admin.describe_topics([topic])
        found = len(described[0]["partitions"]) if described else 0
    finally:
        admin.close()
    if found != partitions:
        raise RuntimeError(
            f"Kafka topic {topic} has {found} partitions, GB_KAFKA_PARTITIONS says {partitions}"
        )


class _Loop(ABC):
    """A named daemon thread that runs `step` until stopped, backing off after failures."""

    name = "loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.error: str | None = None
        self.ready = threading.Event()  # set once the worker takes part (a projector: joined)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=15)
        self._close()

    def run_forever(self) -> None:
        """Runs in the calling thread (for `gbserver relay` / `gbserver project`)."""
        try:
            self._run()
        finally:
            self._close()

    @abstractmethod
    def _wake(self) -> None:
        """Interrupts a wait inside `_step`, so that `stop` is seen at once."""

    @abstractmethod
    def _close(self) -> None:
        """Releases the Kafka client; the next `_step` makes a new one."""

    @abstractmethod
    def _step(self) -> None: ...

    def _recovered(self) -> None:
        """Called after each unit of work that went through: clears a reported failure."""
        if self.error is not None:
            log.info("%s recovered", self.name)
            self.error = None

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._step()
                self._recovered()
                backoff = 0.2
            except Exception as e:  # noqa: BLE001 - the loop outlives Kafka and database outages
                if self.error is None:
                    log.warning("%s failed: %s; retrying", self.name, e, exc_info=True)
                self.error = f"{type(e).__name__}: {e}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


class Relay(_Loop):
    name = "kafka-relay"

    def __init__(
        self,
        events: EventStoreAdapter,
        read: ReadStore,
        signal: LogSignal,
        bootstrap: str,
        topic: str,
        partitions: int,
    ) -> None:
        super().__init__()
        self.events = events
        self.read = read
        self.signal = signal
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.tracking_name = f"relay:{topic}"
        self._producer: KafkaProducer | None = None
        self._publishing_since: float | None = None

    @property
    def healthy(self) -> bool:
        """False while Kafka refuses us, or has kept a batch waiting for over two seconds."""
        started = self._publishing_since
        return self.error is None and (started is None or time.monotonic() - started < 2.0)

    def _wake(self) -> None:
        self.signal.wake_all()

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            ensure_topic(self.bootstrap, self.topic, self.partitions)
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id="gbserver-relay",
                acks="all",
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                linger_ms=2,
                max_block_ms=5000,
                request_timeout_ms=10000,
                delivery_timeout_ms=30000,
            )
        return self._producer

    def _step(self) -> None:
        self.ready.set()
        try:
            producer = self._connect()
            position = self.read.max_tracking_id(self.tracking_name) or 0
            while not self._stop.is_set():
                end = self.events.max_notification_id()
                batch = self.events.notifications(position, RELAY_BATCH, ())
                if not batch:
                    self.signal.wait_beyond(end, (), POLL_SECONDS)
                    continue
                self._publish(producer, batch)
                position = batch[-1].id
                self.read.insert_tracking(Tracking(self.tracking_name, position))
                self._recovered()
        except KafkaError:
            self._close()  # a fresh producer after an outage; the log resends from our position
            raise

    def _publish(self, producer: KafkaProducer, batch: Sequence[Notification]) -> None:
        self._publishing_since = time.monotonic()
        try:
            self._send_all(producer, batch)
        finally:
            self._publishing_since = None

    def _send_all(self, producer: KafkaProducer, batch: Sequence[Notification]) -> None:
        futures = [
            producer.send(
                self.topic,
                key=str(n.originator_id).encode(),
                value=msgspec.json.encode(
                    Message(n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                ),
                partition=partition_for(str(n.originator_id), self.partitions),
            )
            for n in batch
        ]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=0)  # raises the send's error, if any


class _Forget(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops in-memory positions of partitions that move: another worker may advance them."""

    def __init__(self, at: dict[str, int], joined: threading.Event) -> None:
        self.at = at
        self.joined = joined

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.at.clear()

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.at.clear()
        self.joined.set()
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class KafkaProjector(_Loop):
    name = "kafka-projector"

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
        self._consumer: KafkaConsumer | None = None
        self._at: dict[str, int] = {}  # "tasks:p3" -> last applied notification id

    def _wake(self) -> None:
        """The consumer's poll returns within POLL_SECONDS by itself."""

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
                client_id=f"gbserver-projector-{self.group}",
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=500,
                session_timeout_ms=10000,
                heartbeat_interval_ms=2000,
                max_poll_interval_ms=300000,
            )
            self._consumer.subscribe([self.topic], listener=_Forget(self._at, self.ready))
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
            consumer = self._connect()
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=int(POLL_SECONDS * 1000))
                for tp, records in sorted(polled.items(), key=lambda kv: kv[0].partition):
                    self._apply(tp, records)
                if polled:
                    consumer.commit()
                self._recovered()
        except Exception:
            self._at.clear()  # positions are re-read from the read store after a failure
            self._close()
            raise

    def _apply(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        decoded = []
        for record in records:
            message = msgspec.json.decode(record.value, type=Message)
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
