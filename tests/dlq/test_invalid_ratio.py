"""The invalid-ratio cap: a flood of garbage (a bad deploy upstream) stops the stage with a non-zero
exit instead of draining the whole topic into the dead-letter queue, and nothing is lost on the
way: every offset the stage committed before it stopped was dead-lettered, nothing beyond it was."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer as CKProducer

from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config, ensure_topics
from facestream.transport.topics import catalogue
from tests.fixtures.kafka import TEST_PARTITIONS, committed_offsets, delete_topics, end_offsets, read_topic
from tests.integration.processes import kafka_args, services, wait_until

pytestmark = pytest.mark.slow

FLOOD = 400


@pytest.fixture
def flooded(kafka_broker: KafkaSettings) -> Iterator[KafkaSettings]:
    """Topics of their own, with FLOOD messages of garbage waiting on `frames`."""
    kafka = kafka_broker.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:12]}."})
    ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions=TEST_PARTITIONS))
    producer = CKProducer(client_config(kafka))
    for i in range(FLOOD):
        producer.produce(
            kafka.topic_prefix + topics.FRAMES, value=b"not a frame %d" % i, key=b"cam-%d" % (i % 7)
        )
    assert producer.flush(30) == 0
    try:
        yield kafka
    finally:
        delete_topics(kafka, kafka.topic_prefix)


def test_a_flood_of_garbage_stops_the_stage_without_draining_the_topic(
    flooded: KafkaSettings, model_settings: ModelSettings, tmp_path: Path
) -> None:
    kafka = flooded
    group = kafka.topic_prefix + "detector"
    frames, dlq = kafka.topic_prefix + topics.FRAMES, kafka.topic_prefix + topics.dlq("detector")
    model = ["--model-dir", str(model_settings.model_dir), "--execution-provider", "cpu"]
    with services(tmp_path) as running:
        detector = running.start(
            "detector",
            *kafka_args(kafka),
            "--metrics-port",
            "0",
            "--group-id",
            group,
            "--batch-size",
            "50",
            *model,
        )
        wait_until(lambda: not detector.running, 120, "the detector to stop itself")
        assert detector.proc.returncode == 1, detector.tail()
        assert "of the last" in detector.log() and "stopping without committing" in detector.log()

    ends = end_offsets(kafka, frames)
    assert sum(ends.values()) == FLOOD
    committed = committed_offsets(kafka, group, frames)
    done = sum(committed.values())
    assert done < FLOOD / 2, f"{done} of {FLOOD} drained before the cap stopped the stage"
    # nothing lost: exactly the committed offsets were dead-lettered, each once
    letters = read_topic(kafka, dlq, done, timeout_s=30) if done else []
    origins = sorted((dict(e.headers)["fs.dlq.partition"], dict(e.headers)["fs.dlq.offset"]) for e in letters)
    expected = sorted((str(p).encode(), str(o).encode()) for p, end in committed.items() for o in range(end))
    assert origins == expected
