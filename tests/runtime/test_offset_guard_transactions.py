"""The offset guard on a transactional input: where it starts, and partitions ending in markers."""

from __future__ import annotations

from typing import Any

from facestream.runtime.offset_guard import OffsetGuard, Verdict
from tests.fixtures.clock import Clock


def test_a_seeded_partition_notices_that_its_first_events_were_skipped() -> None:
    clock = Clock(100.0)
    progress: dict[str, Any] = {}
    guard = OffsetGuard(progress, clock=clock)
    assert guard.needs_seed(0)
    assert guard.stalled({0: 5}, 1.0) == {}  # nothing known: nothing to say

    guard.seed(0, 3)  # the group reads partition 0 from offset 3

    assert not guard.needs_seed(0)
    assert guard.check(0, 5) is Verdict.GAP and guard.expected(0) == 3
    clock.now += 2
    assert guard.stalled({0: 5}, 1.0) == {0: 3}
    guard.done(0, 5)
    assert progress == {"0": 6} and guard.expected(0) == 6  # what was applied wins over the seed


def test_a_partition_ending_in_markers_is_quiet_not_stalled() -> None:
    clock = Clock(100.0)
    guard = OffsetGuard({}, clock=clock)
    assert guard.check(1, 9) is Verdict.PROCESS
    guard.done(1, 9)  # last message at 9; a commit marker at 10; the log ends at 11
    clock.now += 5
    assert guard.stalled({1: 11}, 1.0) == {1: 10}

    guard.quiet(1, 11)  # read directly: nothing there

    assert guard.stalled({1: 11}, 1.0) == {}
    assert guard.stalled({1: 14}, 1.0) == {1: 10}  # more arrived and was not delivered
