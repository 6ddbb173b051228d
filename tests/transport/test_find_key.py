"""find_key: the episode step's read-back after a crash ("is this candidate in `matches` already?").

Every partition is read from the offset of a time to its end, read_committed: a key written before
that time, or only in an aborted transaction, is not found; one written after it in any partition is.
"""

from __future__ import annotations

import time
import uuid

from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer, TransactionalProducer, find_key, partition_of_key


def keys_by_partition(prefix: str, partitions: int) -> dict[int, list[bytes]]:
    """A few keys for each partition (`partition_of_key`), so the test writes where it means to."""
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for n in range(200):
        key = f"{prefix}-{n}".encode()
        out[partition_of_key(key, partitions)].append(key)
    assert all(len(keys) >= 3 for keys in out.values())
    return out


def test_find_key_finds_a_key_written_since_a_time_in_any_partition(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    topic = settings.topic_prefix + topics.MATCHES  # 2 partitions
    keys = keys_by_partition(uuid.uuid4().hex, 2)
    since_ms = int(time.time() * 1000)
    producer = KafkaProducer(settings)
    for partition in (0, 1):
        old, new, filler = keys[partition][:3]
        producer.raw.produce(topic, b"old", key=old, timestamp=since_ms - 60_000)
        for n in range(20):
            producer.raw.produce(topic, b"filler", key=filler, timestamp=since_ms - 30_000 + n)
        producer.raw.produce(topic, b"new", key=new, timestamp=since_ms + 1)
        producer.raw.produce(topic, b"filler", key=filler, timestamp=since_ms + 2)
    assert producer.raw.flush(30) == 0

    for partition in (0, 1):
        old, new, _ = keys[partition][:3]
        assert find_key(settings, topic, new, since_ms), f"the key written since, partition {partition}"
        assert not find_key(settings, topic, old, since_ms), f"a key written before, partition {partition}"
        assert find_key(settings, topic, old, since_ms - 120_000), "since earlier, the old key counts"
    assert not find_key(settings, topic, f"never-{uuid.uuid4().hex}".encode(), since_ms)
    assert not find_key(settings, topic, keys[0][1], since_ms + 3_600_000), "nothing that late"


def test_find_key_reads_only_committed_records(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    topic = settings.topic_prefix + topics.MATCHES
    keys = keys_by_partition(uuid.uuid4().hex, 2)
    since_ms = int(time.time() * 1000) - 1_000
    producer = TransactionalProducer(settings, f"{settings.topic_prefix}find-key-test", timeout_s=10)
    try:
        producer.begin()
        producer.produce(topic, b"aborted", key=keys[0][0])
        producer.produce(topic, b"aborted", key=keys[1][0])
        producer.flush(30)
        producer.abort()
        producer.begin()
        producer.produce(topic, b"committed", key=keys[1][1])
        producer.commit({}, None)
    finally:
        producer.close()

    assert not find_key(settings, topic, keys[0][0], since_ms)
    assert not find_key(settings, topic, keys[1][0], since_ms)
    assert find_key(settings, topic, keys[1][1], since_ms)
