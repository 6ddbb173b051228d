"""librdkafka clients that do not come back whole from a broker restart are replaced, not waited for.

The wedges themselves are librdkafka bugs that a broker restart triggers only now and then
(test_broker_faults.py met both, about one run in four on a loaded machine). Here each is made
on purpose, on a real broker, so that the replacement is checked every run:

- a consumer whose fetchers stopped: its partitions paused behind the runner's back, the state
  librdkafka leaves them in (confluentinc/librdkafka#5153);
- a transactional producer whose abort "times out, retry to resume" for good: its abort call
  answers exactly what librdkafka answered in the failing runs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as CKProducer
from prometheus_client import REGISTRY

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import Frame
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer, KafkaProducer, TransactionalProducer, read_range
from tests.fixtures.kafka import committed_offsets, end_offsets
from tests.reliability.test_rebalance import publish_frames


class Recorder:
    """Consumes frames, outputs nothing, and remembers every frame it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        self.seen.extend(item.ref.frame_id for item in items)
        return [[] for _ in items]


def rejoins(stage: str) -> float:
    return REGISTRY.get_sample_value("facestream_input_rejoins_total", {"stage": stage}) or 0.0


def test_a_consumer_whose_fetchers_stopped_is_replaced_and_the_input_finished_once(
    kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES  # two partitions
    publish_frames(settings, [f"cam-{n}" for n in range(6)], 4)
    wanted = end_offsets(settings, frames)
    group = settings.topic_prefix + "wedged-consumer"
    stage = f"wedge-{uuid.uuid4().hex[:6]}"
    recorder = Recorder(stage)
    consumer = KafkaConsumer(settings, group)
    runner: StageRunner[Frame, Frame] = StageRunner(
        recorder,
        Route(frames, codec.FRAMES, settings.topic_prefix + topics.FACES, codec.FRAMES, "unused"),
        consumer,
        KafkaProducer(settings),
        policy=LoopPolicy(batch_size=2, batch_timeout_s=0.2, stall_s=4),
    )
    runner.start()
    deadline = time.monotonic() + 60
    while len(recorder.seen) < 4:
        assert time.monotonic() < deadline, "nothing consumed before the wedge"
        runner.run_once()

    # The wedge: fetching stops while the group still counts this member as the partitions' owner.
    consumer.raw.pause(consumer.raw.assignment())
    before = rejoins(stage)
    caplog.set_level(logging.ERROR, logger="facestream.runtime.runner")
    deadline = time.monotonic() + 60
    while committed_offsets(settings, group, frames) != wanted:
        assert time.monotonic() < deadline, (
            f"the input never finished: committed {committed_offsets(settings, group, frames)} of {wanted}"
        )
        runner.run_once()
    consumer.close()

    assert rejoins(stage) >= before + 1
    assert any("input stalled" in r.getMessage() and "rejoining" in r.getMessage() for r in caplog.records)
    assert len(recorder.seen) == sum(wanted.values())
    assert len(set(recorder.seen)) == len(recorder.seen), "a frame was processed twice"


def test_an_input_at_rest_or_moving_is_never_taken_for_a_stall(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES
    publish_frames(settings, [f"cam-{n}" for n in range(4)], 3)
    stage = f"rest-{uuid.uuid4().hex[:6]}"
    recorder = Recorder(stage)
    runner: StageRunner[Frame, Frame] = StageRunner(
        recorder,
        Route(frames, codec.FRAMES, settings.topic_prefix + topics.FACES, codec.FRAMES, "unused"),
        KafkaConsumer(settings, settings.topic_prefix + "at-rest"),
        KafkaProducer(settings),
        policy=LoopPolicy(batch_size=1, batch_timeout_s=0.2, stall_s=5),
    )
    runner.start()
    deadline = time.monotonic() + 13  # well past stall_s: one frame a poll, then idle
    while time.monotonic() < deadline:
        runner.run_once()
    runner.consumer.close()
    assert len(recorder.seen) == 12
    assert rejoins(stage) == 0


class AbortNeverCompletes:
    """A real producer whose abort answers as librdkafka 2.16 did after a broker restart, for good."""

    def __init__(self, real: CKProducer) -> None:
        self._real = real

    def abort_transaction(self, *_: Any) -> None:
        raise KafkaException(
            KafkaError(
                KafkaError._TIMED_OUT,
                "Timed out waiting for operation to finish, retry call to resume",
                retriable=True,
            )
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_producer_that_cannot_abort_is_replaced_and_its_transaction_never_shows(
    kafka_topics: KafkaSettings,
) -> None:
    settings = kafka_topics
    topic = settings.topic_prefix + topics.FACES
    transactional_id = f"{settings.topic_prefix}wedged-{uuid.uuid4().hex[:6]}"
    producer = TransactionalProducer(settings, transactional_id, timeout_s=2)
    start = end_offsets(settings, topic)
    producer.begin()
    producer.produce(topic, b"aborted", key=b"k")
    producer.flush(10)
    wedged = AbortNeverCompletes(producer.raw)
    producer._producer = wedged  # type: ignore[assignment]

    aborting = threading.Thread(target=producer.abort, daemon=True)
    aborting.start()
    aborting.join(60)
    assert not aborting.is_alive(), "abort kept retrying a client that can never abort"
    assert producer.raw is not wedged

    producer.begin()  # the replacement works: its transaction commits
    producer.produce(topic, b"committed", key=b"k")
    producer.flush(10)
    producer.commit({}, None)
    producer.close()
    values = [
        env.value
        for partition, first in start.items()
        for env in read_range(settings, topic, partition, first, end_offsets(settings, topic)[partition])
    ]
    assert values == [b"committed"]
