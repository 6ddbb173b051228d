"""One contract, two transports: the in-process broker and the real Apache Kafka broker.

Every stage runs on either transport, so each behaviour the runner relies on (keys, headers,
partitioning, commits, redelivery, pausing, delivery failures, lag) is checked on both with
the same test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest

from facestream.errors import DeliveryError
from facestream.settings import KafkaSettings
from facestream.transport.base import Consumer, Envelope, Producer, next_offsets
from facestream.transport.kafka import KafkaConsumer, KafkaProducer, ensure_topics
from facestream.transport.memory import MemoryBroker
from facestream.transport.topics import HOUR_MS, TopicSpec
from tests.fixtures.kafka import free_port


class Backend(Protocol):
    def topic(self, partitions: int) -> str: ...

    def consumer(self, group: str) -> Consumer: ...

    def producer(self, *, fail_fast: bool = False) -> Producer: ...

    def close(self) -> None: ...


class MemoryBackend:
    def __init__(self) -> None:
        self.broker = MemoryBroker(auto_create=False)

    def topic(self, partitions: int) -> str:
        name = f"topic-{uuid.uuid4().hex[:8]}"
        self.broker.create_topic(name, partitions)
        return name

    def consumer(self, group: str) -> Consumer:
        return self.broker.consumer(group)

    def producer(self, *, fail_fast: bool = False) -> Producer:
        return self.broker.producer()

    def close(self) -> None:
        return None


class KafkaBackend:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._open: list[KafkaConsumer | KafkaProducer] = []

    def topic(self, partitions: int) -> str:
        name = f"{self.settings.topic_prefix}topic-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.settings, [TopicSpec(name, partitions, HOUR_MS, HOUR_MS)])
        return name

    def consumer(self, group: str) -> Consumer:
        consumer = KafkaConsumer(self.settings, self.settings.topic_prefix + group)
        self._open.append(consumer)
        return consumer

    def producer(self, *, fail_fast: bool = False) -> Producer:
        extra = {"message.timeout.ms": 2000} if fail_fast else None
        producer = KafkaProducer(self.settings, extra=extra)
        self._open.append(producer)
        return producer

    def close(self) -> None:
        for client in self._open:
            try:
                client.close()
            except RuntimeError:  # a consumer the test closed already
                continue


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    chosen: Backend = (
        MemoryBackend()
        if request.param == "memory"
        else KafkaBackend(request.getfixturevalue("kafka_topics"))
    )
    try:
        yield chosen
    finally:
        chosen.close()


def drain(consumer: Consumer, count: int, timeout_s: float = 30.0) -> list[Envelope]:
    """Everything until `count` arrived, plus whatever else comes within a short settle time
    (so a duplicate or an unexpected message shows up in the result)."""
    out: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.consume(100, 0.2))
    out.extend(consumer.consume(100, 0.5))
    return out


def produce(producer: Producer, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    for key, value in items:
        producer.produce(topic, value, key=key, headers=(("n", value), ("kind", b"test")))
    producer.flush(15)


def test_round_trip_keeps_key_value_headers_and_order(backend: Backend) -> None:
    topic = backend.topic(1)
    items = [(b"cam-1", b"a"), (b"cam-2", b"b"), (b"cam-1", b"c")]
    produce(backend.producer(), topic, items)
    consumer = backend.consumer("g")
    consumer.subscribe([topic])

    got = drain(consumer, 3)

    assert [(e.key, e.value) for e in got] == items
    assert [e.offset for e in got] == [0, 1, 2]
    assert all(e.topic == topic and e.partition == 0 for e in got)
    assert [e.header("n") for e in got] == [b"a", b"b", b"c"]
    assert got[0].headers == (("n", b"a"), ("kind", b"test"))
    assert got[0].header("missing") is None
    assert all(e.timestamp_ms > 1_600_000_000_000 for e in got)


def test_same_key_same_partition_in_order(backend: Backend) -> None:
    topic = backend.topic(4)
    keys = [f"camera-{i}".encode() for i in range(10)]
    items = [(k, f"{k.decode()}#{n}".encode()) for n in range(3) for k in keys]
    produce(backend.producer(), topic, items)
    consumer = backend.consumer("g")
    consumer.subscribe([topic])

    got = drain(consumer, len(items))

    assert len(got) == len(items)
    partition_of: dict[bytes | None, set[int]] = {}
    for env in got:
        partition_of.setdefault(env.key, set()).add(env.partition)
    assert all(len(parts) == 1 for parts in partition_of.values()), partition_of
    assert len({p for parts in partition_of.values() for p in parts}) > 1, "keys should spread"
    for key in keys:
        assert [e.value for e in got if e.key == key] == [f"{key.decode()}#{n}".encode() for n in range(3)]


def test_new_consumer_resumes_after_the_committed_offset(backend: Backend) -> None:
    topic = backend.topic(1)
    items = [(b"k", f"m{i}".encode()) for i in range(6)]
    produce(backend.producer(), topic, items)
    first = backend.consumer("g")
    first.subscribe([topic])
    got = drain(first, 6)
    assert [e.value for e in got] == [v for _, v in items]

    first.commit(next_offsets(got[:4]))
    first.close()
    second = backend.consumer("g")
    second.subscribe([topic])

    assert [e.value for e in drain(second, 2)] == [b"m4", b"m5"]


def test_uncommitted_messages_are_redelivered(backend: Backend) -> None:
    topic = backend.topic(2)
    items = [(f"k{i}".encode(), f"m{i}".encode()) for i in range(5)]
    produce(backend.producer(), topic, items)
    first = backend.consumer("g")
    first.subscribe([topic])
    assert len(drain(first, 5)) == 5
    first.close()  # crashed before committing anything

    second = backend.consumer("g")
    second.subscribe([topic])

    assert sorted(e.value for e in drain(second, 5)) == sorted(v for _, v in items)


def test_pause_all_stops_delivery_until_resume_all(backend: Backend) -> None:
    topic = backend.topic(2)
    producer = backend.producer()
    consumer = backend.consumer("g")
    consumer.subscribe([topic])
    produce(producer, topic, [(b"k", b"before")])
    assert [e.value for e in drain(consumer, 1)] == [b"before"]

    consumer.pause_all()
    produce(producer, topic, [(b"k", b"during"), (b"j", b"during-2")])
    paused = [e for _ in range(4) for e in consumer.consume(100, 0.5)]
    consumer.resume_all()
    resumed = drain(consumer, 2)

    assert paused == []
    assert sorted(e.value for e in resumed) == [b"during", b"during-2"]


def test_lag_counts_messages_after_the_committed_offset(backend: Backend) -> None:
    topic = backend.topic(2)
    items = [(f"cam-{i}".encode(), f"m{i}".encode()) for i in range(7)]
    produce(backend.producer(), topic, items)
    consumer = backend.consumer("g")
    consumer.subscribe([topic])
    got = drain(consumer, 7)
    assert len(got) == 7
    lag_of = consumer.lag  # type: ignore[attr-defined]  # optional in the interface; both have it

    before = {tp: n for tp, n in lag_of().items() if tp[0] == topic}
    committed = next_offsets(got[:3])
    consumer.commit(committed)
    after = {tp: n for tp, n in lag_of().items() if tp[0] == topic}

    per_partition = {(topic, p): sum(1 for e in got if e.partition == p) for p in range(2)}
    assert before == per_partition
    assert after == {tp: n - committed.get(tp, 0) for tp, n in per_partition.items()}
    assert sum(after.values()) == 4


def test_delivery_error_for_a_missing_topic_and_the_producer_recovers(backend: Backend) -> None:
    topic = backend.topic(1)
    producer = backend.producer(fail_fast=True)
    producer.produce(topic + "-missing", b"lost", key=b"k")

    with pytest.raises(DeliveryError, match="missing"):
        producer.flush(15)

    # The failure is reported once; later deliveries are judged on their own.
    produce(producer, topic, [(b"k", b"after")])
    consumer = backend.consumer("g")
    consumer.subscribe([topic])
    assert [e.value for e in drain(consumer, 1)] == [b"after"]


@pytest.mark.kafka
def test_delivery_error_when_the_broker_is_unreachable() -> None:
    """Kafka only: the in-process broker cannot be unreachable."""
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    producer = KafkaProducer(settings, extra={"message.timeout.ms": 1000})
    producer.produce("frames", b"x", key=b"k")

    with pytest.raises(DeliveryError, match="frames"):
        producer.flush(15)
