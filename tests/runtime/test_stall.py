"""When the stall watch calls an input stalled, and when it must not (the runner rejoins on its word)."""

from __future__ import annotations

from facestream.runtime.stall import StallWatch
from facestream.transport.base import PartitionProgress
from tests.fixtures.clock import Clock

P0, P1 = ("frames", 0), ("frames", 1)


def test_a_partition_with_messages_ahead_that_does_not_move_is_stalled_after_stall_s() -> None:
    clock = Clock()
    watch = StallWatch(60, clock)
    assert watch.observe({P0: PartitionProgress(3, 40), P1: PartitionProgress(5, 5)}) is None
    clock.now = 59
    assert watch.observe({P0: PartitionProgress(3, 41), P1: PartitionProgress(5, 5)}) is None
    clock.now = 60
    stalled = watch.observe({P0: PartitionProgress(3, 42), P1: PartitionProgress(5, 5)})
    assert stalled == "frames/0 stood at offset 3 with 39 behind it for 60s"


def test_moving_or_caught_up_partitions_are_never_stalled() -> None:
    clock = Clock()
    watch = StallWatch(60, clock)
    for step in range(10):
        clock.now = step * 30.0
        # P0 moves a little every look; P1 is at its end, however long it stays there.
        assert watch.observe({P0: PartitionProgress(step, 100), P1: PartitionProgress(7, 7)}) is None


def test_a_partition_that_reached_its_end_starts_counting_afresh_when_new_messages_come() -> None:
    clock = Clock()
    watch = StallWatch(60, clock)
    watch.observe({P0: PartitionProgress(10, 10)})
    clock.now = 100  # idle for long, then a message arrives
    assert watch.observe({P0: PartitionProgress(10, 11)}) is None
    clock.now = 159
    assert watch.observe({P0: PartitionProgress(10, 11)}) is None
    clock.now = 160
    assert watch.observe({P0: PartitionProgress(10, 11)}) is not None


def test_kafka_not_answering_for_stall_s_is_a_stall_and_an_answer_ends_it() -> None:
    clock = Clock()
    watch = StallWatch(60, clock)
    assert watch.observe(None) is None
    clock.now = 30
    assert watch.observe(None) is None
    clock.now = 61
    assert watch.observe(None) == "Kafka has not said where the input stands for 61s"
    assert watch.observe({P0: PartitionProgress(1, 1)}) is None
    clock.now = 100
    assert watch.observe(None) is None  # blind again, counted from now


def test_reset_forgets_how_long_a_partition_stood_still() -> None:
    clock = Clock()
    watch = StallWatch(60, clock)
    watch.observe({P0: PartitionProgress(3, 40)})
    clock.now = 50
    watch.reset()  # e.g. the runner paused consuming on purpose until now
    assert watch.observe({P0: PartitionProgress(3, 40)}) is None
    clock.now = 109
    assert watch.observe({P0: PartitionProgress(3, 40)}) is None
    clock.now = 110
    assert watch.observe({P0: PartitionProgress(3, 40)}) is not None
