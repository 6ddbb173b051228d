"""Record size limits on the real broker: where they are set, and how each refusal reaches the caller.

The limits live in transport/topics.py only; these tests read them back from the running broker
(which scripts/kafka.sh configured from that file), from topics the catalogue created, and from the
producer's own behaviour. Then what the runner builds on, found on Kafka 4.1 with librdkafka 2.16:
a record over the producer's limit is refused inside produce() and leaves the transaction able to
commit; a record the broker refuses (over a topic's max.message.bytes, or invalid) comes back in
its delivery report and leaves the transaction fit only to abort. Both are `RecordRefused`, with
the index of the refused produce call; any other failure stays a plain `DeliveryError`.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from facestream.errors import DeliveryError
from facestream.settings import KafkaSettings
from facestream.transport.kafka import (
    KafkaConsumer,
    KafkaProducer,
    RecordRefused,
    TransactionAborted,
    TransactionalProducer,
    client_config,
    create_missing_topics,
)
from facestream.transport.topics import MAX_BATCH_BYTES, MAX_RECORD_BYTES, catalogue
from tests.fixtures.kafka import read_topic

REPO = Path(__file__).resolve().parents[2]
TOPIC_LIMIT = 1_000_000
"""A topic an operator set below the catalogue's limit (max.message.bytes)."""


def topic(settings: KafkaSettings, name: str, **config: str) -> str:
    full = f"{settings.topic_prefix}{name}"
    create_missing_topics(settings, [NewTopic(full, num_partitions=1, replication_factor=-1, config=config)])
    return full


def transactional(settings: KafkaSettings) -> TransactionalProducer:
    return TransactionalProducer(settings, f"limits-{uuid.uuid4().hex}", timeout_s=10)


def test_the_docs_state_the_limits_the_code_sets() -> None:
    text = (REPO / "docs" / "delivery.md").read_text()
    for limit in (MAX_RECORD_BYTES, MAX_BATCH_BYTES):
        assert f"{limit:,}" in text, f"docs/delivery.md does not state {limit:,}"
    script = (REPO / "scripts" / "kafka.sh").read_text()
    assert not re.search(r"max\.bytes=\d", script), "kafka.sh sets a size limit of its own"


def test_the_broker_and_the_catalogue_topics_have_the_one_limit(kafka_topics: KafkaSettings) -> None:
    admin = AdminClient(client_config(kafka_topics))
    [broker_id] = admin.list_topics(timeout=10).brokers
    [broker] = admin.describe_configs([ConfigResource("BROKER", str(broker_id))]).values()
    config = broker.result(timeout=30)
    assert int(config["message.max.bytes"].value) == MAX_BATCH_BYTES
    assert int(config["replica.fetch.max.bytes"].value) == MAX_BATCH_BYTES

    resources = [ConfigResource("TOPIC", t.name) for t in catalogue(kafka_topics.topic_prefix)]
    for resource, future in admin.describe_configs(resources).items():
        assert int(future.result(timeout=30)["max.message.bytes"].value) == MAX_BATCH_BYTES, resource


def test_over_the_producer_limit_is_refused_in_produce_and_the_transaction_still_commits(
    kafka_prefix: KafkaSettings,
) -> None:
    out = topic(kafka_prefix, "out")
    producer = transactional(kafka_prefix)
    try:
        producer.begin()
        producer.produce(out, b"before", key=b"k")
        with pytest.raises(RecordRefused) as refused:
            producer.produce(out, bytes(MAX_RECORD_BYTES), key=b"k")
        producer.produce(out, b"after", key=b"k")
        producer.flush(30)
        producer.commit({}, None)
    finally:
        producer.close()
    [refusal] = refused.value.refusals
    assert (refusal.index, refusal.topic, refusal.code) == (1, out, KafkaError.MSG_SIZE_TOO_LARGE)
    assert refusal.too_large
    assert [e.value for e in read_topic(kafka_prefix, out, 2)] == [b"before", b"after"]


def test_the_largest_record_the_producer_takes_is_taken_by_the_broker(kafka_prefix: KafkaSettings) -> None:
    """The gap between the two limits covers a batch's framing: nothing the producer takes is refused."""
    out = topic(kafka_prefix, "out", **{"max.message.bytes": str(MAX_BATCH_BYTES)})
    producer = KafkaProducer(kafka_prefix)
    value = bytes(MAX_RECORD_BYTES - 1 - 36)  # librdkafka counts 36 B of framing beside a 1-byte key
    producer.produce(out, value, key=b"k")
    with pytest.raises(RecordRefused):
        producer.produce(out, value + b"\x00", key=b"k")
    producer.flush(60)
    producer.close()
    [read] = read_topic(kafka_prefix, out, 1)
    assert len(read.value) == len(value)


def test_a_broker_refusal_leaves_the_transaction_fit_only_to_abort(kafka_prefix: KafkaSettings) -> None:
    out = topic(kafka_prefix, "out")
    small = topic(kafka_prefix, "small", **{"max.message.bytes": str(TOPIC_LIMIT)})
    producer = transactional(kafka_prefix)
    try:
        producer.begin()
        producer.produce(out, b"aborted", key=b"k")
        producer.produce(small, bytes(2 * TOPIC_LIMIT), key=b"k")  # the producer takes it; the broker not
        producer.produce(out, b"aborted too", key=b"k")
        with pytest.raises(RecordRefused) as refused:
            producer.flush(30)
        with pytest.raises(TransactionAborted, match="must be aborted"):
            producer.commit({}, None)

        # The next transactions work again; the first one after the refusal may be aborted once by
        # librdkafka (OUT_OF_ORDER_SEQUENCE_NUMBER: the refused record left a gap), never refused.
        committed = False
        for attempt in range(3):
            producer.begin()
            producer.produce(small, f"later {attempt}".encode(), key=b"k")
            producer.produce(out, f"later {attempt}".encode(), key=b"k")
            try:
                producer.flush(30)
                producer.commit({}, None)
                committed = True
                break
            except RecordRefused:
                raise
            except DeliveryError:
                producer.abort()
        assert committed and attempt <= 1
    finally:
        producer.close()
    [refusal] = refused.value.refusals
    assert (refusal.index, refusal.topic, refusal.code) == (1, small, KafkaError.MSG_SIZE_TOO_LARGE)
    assert [e.value for e in read_topic(kafka_prefix, out, 1)] == [f"later {attempt}".encode()]


def test_an_invalid_record_is_a_refusal_that_is_not_about_size(kafka_prefix: KafkaSettings) -> None:
    compacted = topic(kafka_prefix, "compacted", **{"cleanup.policy": "compact"})
    producer = transactional(kafka_prefix)
    try:
        producer.begin()
        producer.produce(compacted, b"keyed", key=b"k")
        producer.produce(compacted, b"no key", key=None)  # a compacted topic needs keys
        with pytest.raises(RecordRefused) as refused:
            producer.flush(30)
    finally:
        producer.close()
    by_index = {r.index: r for r in refused.value.refusals}
    assert 1 in by_index
    # Kafka refuses the whole batch: the keyed record, when it shared the batch, is reported too.
    assert set(by_index) <= {0, 1}
    assert all((r.code, r.too_large) == (KafkaError.INVALID_RECORD, False) for r in by_index.values())


def test_other_delivery_failures_are_not_refusals(kafka_prefix: KafkaSettings) -> None:
    """A missing topic is no fault of the record: it must roll back and retry, not dead-letter."""
    producer = KafkaProducer(kafka_prefix, extra={"message.timeout.ms": 2000})
    producer.produce(f"{kafka_prefix.topic_prefix}missing", b"x", key=b"k")
    with pytest.raises(DeliveryError, match="missing") as failed:
        producer.flush(15)
    producer.close()
    assert not isinstance(failed.value, RecordRefused)


def test_a_consumer_reads_a_batch_at_the_broker_limit(kafka_prefix: KafkaSettings) -> None:
    """What another producer may write (up to the broker's limit) reaches a stage, to be dead-lettered."""
    big = topic(kafka_prefix, "big", **{"max.message.bytes": str(MAX_BATCH_BYTES)})
    foreign = CKProducer({**client_config(kafka_prefix), "message.max.bytes": 2 * MAX_BATCH_BYTES})
    errors: list[str] = []
    value = bytes(MAX_BATCH_BYTES - 200)
    foreign.produce(big, value, key=b"k", on_delivery=lambda e, _: errors.append(str(e)) if e else None)
    foreign.produce(big, b"after", key=b"k")
    assert foreign.flush(60) == 0 and not errors, errors
    consumer = KafkaConsumer(kafka_prefix, f"{kafka_prefix.topic_prefix}reader")
    try:
        consumer.subscribe([big])
        read: list[bytes] = []
        for _ in range(200):
            read.extend(e.value for e in consumer.consume(10, 0.5))
            if len(read) >= 2:
                break
    finally:
        consumer.close()
    assert [len(v) for v in read] == [len(value), 5]
