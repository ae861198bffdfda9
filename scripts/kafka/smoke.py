"""End-to-end check of the local broker started by `scripts/services up kafka`.

    .venv/bin/python scripts/kafka/smoke.py produce   # topic, 100 keyed messages, group g1 commits
    .venv/bin/python scripts/kafka/smoke.py check  # after a restart: topic, data and offsets kept

`produce` may be run again: it reads only the messages of its own run (marked by a run id)
and expects group g1 to end committed at the end of every partition.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

BOOTSTRAP = os.environ.get("GB_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TOPIC = os.environ.get("GB_KAFKA_SMOKE_TOPIC", "gbserver.events")
GROUP = "g1"
PARTITIONS = 6
COUNT = 100


def ensure_topic(admin: KafkaAdminClient) -> None:
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
        print(f"created topic {TOPIC}")
    except TopicAlreadyExistsError:
        print(f"topic {TOPIC} already exists")


def partitions(consumer: KafkaConsumer) -> list[TopicPartition]:
    deadline = time.monotonic() + 30
    while True:
        parts = consumer.partitions_for_topic(TOPIC)
        if parts:
            return [TopicPartition(TOPIC, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            sys.exit(f"FAIL: no metadata for topic {TOPIC}")
        time.sleep(0.2)


def committed_vs_end(consumer: KafkaConsumer) -> tuple[dict[Any, Any], dict[Any, Any]]:
    tps = partitions(consumer)
    end = consumer.end_offsets(tps)
    committed = {tp: (consumer.committed(tp) or 0) for tp in tps}
    return committed, end


def produce() -> None:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="smoke-admin")
    ensure_topic(admin)
    admin.close()

    run = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, linger_ms=5
    )
    futures = [
        producer.send(TOPIC, key=f"key-{i % 17}".encode(), value=f"{run}:{i}".encode())
        for i in range(COUNT)
    ]
    producer.flush()
    metas = [f.get(timeout=30) for f in futures]
    producer.close()
    used = sorted({m.partition for m in metas})
    print(
        f"produced {COUNT} messages (run {run}) to partitions {used} "
        f"in {time.monotonic() - t0:.2f}s"
    )

    t0 = time.monotonic()
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=BOOTSTRAP,
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    seen: dict[int, tuple[bytes, int]] = {}
    for msg in consumer:
        text = msg.value.decode()
        if text.startswith(run + ":"):
            i = int(text.split(":", 1)[1])
            seen[i] = (msg.key, msg.partition)
        if len(seen) == COUNT:
            break
    consumer.commit()
    if len(seen) != COUNT:
        sys.exit(f"FAIL: consumed {len(seen)} of this run's {COUNT} messages")
    # Keyed: every message of one key went to one partition.
    by_key: dict[bytes, set[int]] = {}
    for key, part in seen.values():
        by_key.setdefault(key, set()).add(part)
    assert all(len(p) == 1 for p in by_key.values()), by_key
    committed, end = committed_vs_end(consumer)
    consumer.close()
    print(
        f"consumed and committed {len(seen)} messages in {time.monotonic() - t0:.2f}s; "
        f"committed {sum(committed.values())} / end {sum(end.values())}"
    )
    if committed != end:
        sys.exit(f"FAIL: committed {committed} != end offsets {end}")
    print("OK produce")


def check() -> None:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="smoke-admin")
    if TOPIC not in admin.list_topics():
        sys.exit(f"FAIL: topic {TOPIC} is gone")
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP, enable_auto_commit=False)
    tps = partitions(consumer)
    if len(tps) != PARTITIONS:
        sys.exit(f"FAIL: {TOPIC} has {len(tps)} partitions, expected {PARTITIONS}")
    committed, end = committed_vs_end(consumer)
    consumer.close()
    total = sum(end.values())
    print(
        f"topic {TOPIC}: {len(tps)} partitions, {total} messages; "
        f"group {GROUP} committed {sum(committed.values())}"
    )
    if total < COUNT or committed != end:
        sys.exit(f"FAIL: committed {committed} != end offsets {end}")
    # The data itself is still readable from the beginning.
    reader = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    reader.assign(tps)
    reader.seek_to_beginning(*tps)
    n = sum(1 for _ in zip(range(total), reader, strict=False))
    reader.close()
    if n != total:
        sys.exit(f"FAIL: read back {n} of {total} messages")
    print(f"read back all {n} messages; OK check")


if __name__ == "__main__":
    {"produce": produce, "check": check}[sys.argv[1] if len(sys.argv) > 1 else "produce"]()
