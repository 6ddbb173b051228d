"""read_range: exact offsets of one partition, read without joining a group."""

from __future__ import annotations

from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer, ensure_topics, read_range
from facestream.transport.topics import HOUR_MS, TopicSpec
from tests.fixtures.kafka import committed_offsets


def test_read_range_returns_exactly_the_offsets_asked_for(kafka_topics: KafkaSettings) -> None:
    topic = kafka_topics.topic_prefix + "range"
    ensure_topics(kafka_topics, [TopicSpec(topic, 1, HOUR_MS, HOUR_MS)])
    producer = KafkaProducer(kafka_topics)
    for i in range(10):
        producer.produce(topic, f"m{i}".encode(), key=b"k", headers=(("n", str(i).encode()),))
    producer.flush(15)

    middle = read_range(kafka_topics, topic, 0, 3, 7)
    past_the_end = read_range(kafka_topics, topic, 0, 8, 20)

    assert [(e.offset, e.value, e.header("n")) for e in middle] == [
        (i, f"m{i}".encode(), str(i).encode()) for i in range(3, 7)
    ]
    assert [e.offset for e in past_the_end] == [8, 9]
    assert read_range(kafka_topics, topic, 0, 5, 5) == []
    assert committed_offsets(kafka_topics, f"{kafka_topics.client_id}-read-range", topic) == {}
