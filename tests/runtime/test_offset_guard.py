"""The offset guard applies each input offset once and in order, and notices skipped ones."""

from __future__ import annotations

from typing import Any

from facestream.runtime.offset_guard import OffsetGuard, Verdict
from tests.fixtures.clock import Clock


def test_in_order_duplicates_and_gaps() -> None:
    progress: dict[str, Any] = {}
    guard = OffsetGuard(progress)

    assert guard.check(0, 7) is Verdict.PROCESS  # nothing applied yet: start anywhere
    guard.done(0, 7)
    assert guard.check(0, 8) is Verdict.PROCESS
    guard.done(0, 8)
    assert [guard.check(0, o) for o in (5, 8)] == [Verdict.DUPLICATE, Verdict.DUPLICATE]
    assert guard.check(0, 11) is Verdict.GAP
    assert guard.expected(0) == 9
    assert guard.check(1, 0) is Verdict.PROCESS  # partitions are independent
    assert progress == {"0": 9}


def test_progress_lives_in_the_mapping_it_is_given() -> None:
    """A restarted worker whose table was recovered continues where the last one stopped."""
    progress: dict[str, Any] = {}
    OffsetGuard(progress).done(2, 41)

    recovered = OffsetGuard(dict(progress))

    assert recovered.expected(2) == 42
    assert recovered.check(2, 41) is Verdict.DUPLICATE
    assert recovered.check(2, 42) is Verdict.PROCESS


def test_stalled_partition_is_one_with_unapplied_input_and_no_events() -> None:
    clock = Clock(100.0)
    guard = OffsetGuard({}, clock=clock)
    guard.check(0, 0)
    guard.done(0, 0)
    guard.check(1, 0)
    guard.done(1, 0)

    assert guard.stalled({0: 5, 1: 1}, idle_s=3) == {}  # just saw events: not stalled yet
    clock.now += 5
    guard.done(2, 3)  # recovered progress of a partition with no event since the start
    assert guard.stalled({0: 5, 1: 1, 2: 9}, idle_s=3) == {0: 1}  # 1 is caught up; 2 gets time
    clock.now += 3
    assert guard.stalled({0: 5, 1: 1, 2: 9}, idle_s=3) == {0: 1, 2: 4}
    guard.touch(2)
    guard.touch(0)
    assert guard.stalled({0: 5}, idle_s=3) == {}
    clock.now += 3
    assert guard.stalled({0: 5}, idle_s=3) == {0: 1}
