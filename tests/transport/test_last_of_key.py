"""Finding a key's newest record without reading every partition (the frame-sampler's resume):
the partition a producer writes a key to is computed the same way by the reader, and the backward
search finds the newest record of the key however many others follow it, within its bound."""

from __future__ import annotations

import uuid

from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer, last_of_key, partition_of_key


def test_the_producer_writes_a_key_where_partition_of_key_says(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    topic = settings.topic_prefix + topics.CAMERAS  # 4 partitions here
    producer = KafkaProducer(settings)
    landed: dict[bytes, int] = {}
    keys = [f"cam-{n}".encode() for n in range(64)] + ["kamera-é".encode(), b"x" * 300]
    for key in keys:
        producer.raw.produce(
            topic, b"{}", key=key, on_delivery=lambda err, msg: landed.__setitem__(msg.key(), msg.partition())
        )
    assert producer.raw.flush(30) == 0
    assert {key: landed[key] for key in keys} == {key: partition_of_key(key, 4) for key in keys}


def test_the_newest_record_of_a_key_is_found_behind_many_others_and_not_beyond_the_bound(
    kafka_topics: KafkaSettings,
) -> None:
    settings = kafka_topics
    topic = settings.topic_prefix + topics.FRAMES  # 2 partitions
    wanted = b"gate"
    others = [
        k
        for k in (f"other-{n}".encode() for n in range(100))
        if partition_of_key(k, 2) == partition_of_key(wanted, 2)
    ]
    producer = KafkaProducer(settings)
    for n in range(3):
        producer.produce(topic, f"gate-{n}".encode(), key=wanted)
    for n in range(700):  # behind it, in the same partition: several backward windows
        producer.produce(topic, b"filler", key=others[n % len(others)])
    producer.flush(30)

    found = last_of_key(settings, topic, wanted)
    assert found is not None and found.value == b"gate-2"
    assert last_of_key(settings, topic, wanted, within=500) is None  # further back than it looks
    assert last_of_key(settings, topic, f"never-{uuid.uuid4().hex}".encode()) is None
