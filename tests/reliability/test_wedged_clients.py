"""librdkafka clients that do not come back whole from a broker restart are replaced, not waited for.

The wedges themselves are librdkafka bugs that a broker restart triggers only now and then
(test_broker_faults.py met both, about one run in four on a loaded machine). Here each is made
on purpose, on a real broker, so that the replacement is checked every run:

- a consumer whose fetchers stopped: its partitions paused behind the runner's back, the state
  librdkafka leaves them in (confluentinc/librdkafka#5153);
- a transactional producer whose abort "times out, retry to resume" for good: its abort call
  answers exactly what librdkafka answered in the failing runs;
- a static member fenced by another join under its own group.instance.id, which is what a broker
  restart makes of librdkafka's retried JoinGroup: the client is dead for good (one `_FATAL`
  error, then nothing), and used to stand still until the stall watch (120 s) replaced it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as CKProducer
from prometheus_client import REGISTRY

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import Frame
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import (
    KafkaConsumer,
    KafkaProducer,
    TransactionalProducer,
    client_config,
    read_range,
)
from facestream.transport.transactional import Transactional
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


class Copy:
    """Outputs every frame as it came: its outputs say, exactly once each, what was committed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        return [[item] for item in items]


def test_a_fenced_static_member_rejoins_at_once_and_every_input_is_output_once(
    kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_topics
    frames, faces = settings.topic_prefix + topics.FRAMES, settings.topic_prefix + topics.FACES
    publish_frames(settings, [f"cam-{n}" for n in range(6)], 6)
    wanted = end_offsets(settings, frames)
    group, instance = settings.topic_prefix + "fenced", "replica-0"
    stage = f"fenced-{uuid.uuid4().hex[:6]}"
    consumer = KafkaConsumer(settings, group, instance_id=instance)
    producer = TransactionalProducer(settings, f"{group}.{instance}", timeout_s=10)
    runner: StageRunner[Frame, Frame] = StageRunner(
        Copy(stage),
        Route(frames, codec.FRAMES, faces, codec.FRAMES, "unused"),
        consumer,
        producer,
        policy=LoopPolicy(batch_size=2, batch_timeout_s=0.2, stall_s=120),
        commit=Transactional(consumer, producer),
    )
    runner.start()
    deadline = time.monotonic() + 60
    while not committed_offsets(settings, group, frames):
        assert time.monotonic() < deadline, "nothing committed before the fence"
        runner.run_once()

    # Another join under the same instance id takes the member over: the runner's client is fenced.
    intruder = CKConsumer(
        {
            **client_config(settings),
            "group.id": group,
            "group.instance.id": instance,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
        }
    )
    intruder.subscribe([frames])
    before = rejoins(stage)
    caplog.set_level(logging.ERROR, logger="facestream.transport.kafka")
    fenced_at = time.monotonic()
    deadline = fenced_at + 60
    while consumer.fatal_rejoins == 0:
        assert time.monotonic() < deadline, "the runner's client was not replaced within 60 s of the fence"
        runner.run_once()
        intruder.poll(0.1)
    replaced_after_s = time.monotonic() - fenced_at
    intruder.close()

    deadline = time.monotonic() + 60  # well inside stall_s: only the fence handling can finish it
    while committed_offsets(settings, group, frames) != wanted:
        assert time.monotonic() < deadline, (
            f"the input never finished: committed {committed_offsets(settings, group, frames)} of {wanted}"
        )
        runner.run_once()
    runner.consumer.close()
    producer.close()

    assert replaced_after_s < 15, f"the fenced client was replaced only after {replaced_after_s:.0f}s"
    assert rejoins(stage) >= before + 1
    assert any("fenced" in r.getMessage() and "new client" in r.getMessage() for r in caplog.records)
    outputs = [
        codec.FRAMES.decode(env.value).ref.frame_id
        for partition, end in end_offsets(settings, faces).items()
        for env in read_range(settings, faces, partition, 0, end)
    ]
    assert len(outputs) == sum(wanted.values())
    assert len(set(outputs)) == len(outputs), "a frame was output twice"


def test_two_members_sharing_an_instance_id_do_not_fence_each_other_in_a_loop(
    kafka_topics: KafkaSettings,
) -> None:
    """Two replicas started with one --replica-id: each replacement fences the other, so the
    replacements must slow down instead of churning the group for as long as both run."""
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES
    group = settings.topic_prefix + "twins"
    twins = [KafkaConsumer(settings, group, instance_id="same") for _ in range(2)]
    for twin in twins:
        twin.subscribe([frames])
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            for twin in twins:
                twin.consume(10, 0.1)
    finally:
        for twin in twins:
            twin.close()
    replaced = [twin.fatal_rejoins for twin in twins]
    assert sum(replaced) >= 1, "neither twin was ever fenced: the test shows nothing"
    # Delays of 0, 5 and 15 s: at most 3 replacements each in 25 s, not one per fence.
    assert max(replaced) <= 3, replaced
