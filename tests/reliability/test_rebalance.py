"""Replicas coming and going: a replica reports lag only for partitions it owns, and a commit
the group refuses (its partitions moved on) is dropped without stopping the service."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import Frame, FrameRef
from facestream.runtime import metrics
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.base import next_offsets
from facestream.transport.kafka import KafkaConsumer, KafkaProducer
from tests.fixtures.kafka import committed_offsets


class Sink:
    """Consumes frames, outputs nothing: the runner's loop without any output to deliver."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        return [[] for _ in items]


def publish_frames(settings: KafkaSettings, cameras: Sequence[str], each: int) -> None:
    producer = KafkaProducer(settings)
    for camera in cameras:
        for n in range(each):
            frame = Frame(FrameRef(camera, f"{camera}@{n}", n, "test"), 1, 1, b"\xff\xd8")
            producer.produce(settings.topic_prefix + topics.FRAMES, codec.FRAMES.encode(frame), key=frame.key)
    producer.flush(15)


def lag_partitions(stage: str) -> set[str]:
    return {
        sample.labels["partition"]
        for family in metrics.CONSUMER_LAG.collect()
        for sample in family.samples
        if sample.labels["stage"] == stage
    }


def test_a_replica_drops_the_lag_series_of_partitions_it_lost(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES  # two partitions
    publish_frames(settings, [f"cam-{n}" for n in range(8)], 3)
    group = settings.topic_prefix + "lag-group"
    stage = f"lag-{uuid.uuid4().hex[:6]}"
    runner: StageRunner[Frame, Frame] = StageRunner(
        Sink(stage),
        Route(frames, codec.FRAMES, settings.topic_prefix + topics.FACES, codec.FRAMES, "unused"),
        KafkaConsumer(settings, group),
        KafkaProducer(settings),
        policy=LoopPolicy(batch_timeout_s=0.2, lag_interval_s=0),
    )
    runner.start()
    deadline = time.monotonic() + 60
    while lag_partitions(stage) != {"0", "1"}:
        assert time.monotonic() < deadline, lag_partitions(stage)
        runner.run_once()

    other = KafkaConsumer(settings, group)
    other.subscribe([frames])
    try:
        deadline = time.monotonic() + 60
        while len(lag_partitions(stage)) != 1:
            assert time.monotonic() < deadline, "the second replica never took a partition"
            runner.run_once()
            other.consume(100, 0.2)
        kept = lag_partitions(stage)
        runner.run_once()  # reporting lag again does not bring the lost partition back
        assert lag_partitions(stage) == kept
    finally:
        other.close()
        runner.consumer.close()


def test_a_commit_refused_after_the_group_moved_on_is_dropped_and_the_batch_read_again(
    kafka_topics: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES
    publish_frames(settings, ["cam-a"], 5)
    group = settings.topic_prefix + "refused"
    slow = KafkaConsumer(
        settings,
        group,
        extra={"session.timeout.ms": 6000, "max.poll.interval.ms": 6000, "heartbeat.interval.ms": 500},
    )
    slow.subscribe([frames])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 5 and time.monotonic() < deadline:
        got.extend(slow.consume(100, 0.5))
    assert len(got) == 5
    time.sleep(8)  # longer than max.poll.interval: the group drops this member

    owner = KafkaConsumer(settings, group)
    owner.subscribe([frames])
    try:
        again = []
        deadline = time.monotonic() + 60
        while len(again) < 5 and time.monotonic() < deadline:
            again.extend(owner.consume(100, 0.5))
        assert [e.offset for e in again] == [e.offset for e in got]  # the batch goes to the new owner

        with caplog.at_level(logging.WARNING, logger="facestream.transport.kafka"):
            slow.commit(next_offsets(got))  # refused: must neither raise nor store anything
        assert "commit refused" in caplog.text
        assert committed_offsets(settings, group, frames) == {}
    finally:
        owner.close()
        slow.close()
