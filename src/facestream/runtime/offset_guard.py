"""Apply each input offset once, in order, whatever the stream library delivers.

faust-streaming 0.15, when a worker starts with input waiting while its tables recover,
can deliver some events twice (fetched before and after its seek to the committed offset)
or skip some (acknowledged as "skipped during rebalance", then never read again); a seek
made while it drains a fetched batch is undone the same way. Either corrupts the episode
state: a replayed old hit looks like a new episode, a skipped one is lost.

The guard keeps, per input partition, the next offset it expects, in a mapping that lives
beside the state it protects (a faust Table: same changelog, flushed before offsets are
committed, recovered with it). An older offset is a duplicate: skip it. A newer one means
something was skipped: the caller reads the missing offsets itself, then goes on. A
partition whose log ends beyond the expected offset while no event arrives had its last
events skipped: `stalled` names it, and the caller seeks back (the stream is idle then,
so the seek is not undone) and calls `touch` so as to wait `idle_s` before trying again.

Before anything of a partition was applied, the caller `seed`s it with the offset its
reading starts from, so that even the first events being skipped is noticed.

A topic written in Kafka transactions has offsets that hold no message at all: the control
record each commit leaves, and aborted records (invisible to read_committed). A gap is then
usually nothing but those; the caller's direct read finds no message in it, and goes on.
Likewise a partition whose end is only control records is not stalled: the caller, having
read nothing there, says so with `quiet`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from enum import Enum
from typing import Any


class Verdict(Enum):
    PROCESS = "process"
    DUPLICATE = "duplicate"
    GAP = "gap"
    """Offsets [expected, this one) were skipped: read and apply them first."""


class OffsetGuard:
    def __init__(
        self, progress: MutableMapping[str, Any], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._progress = progress
        self._clock = clock
        self._last_event: dict[int, float] = {}
        self._quiet_until: dict[int, int] = {}
        self._floor: dict[int, int] = {}

    def expected(self, partition: int) -> int | None:
        """The next offset to apply: after the last one applied, else where the partition's
        reading starts (`seed`); None when neither is known."""
        value = self._progress.get(str(partition))
        return self._floor.get(partition) if value is None else int(value)

    def needs_seed(self, partition: int) -> bool:
        return self._progress.get(str(partition)) is None and partition not in self._floor

    def seed(self, partition: int, offset: int) -> None:
        """Where reading a partition of which nothing was applied yet starts (the group's
        committed offset, or the log's start): so that skipped first events are noticed too."""
        self._floor[partition] = offset

    def check(self, partition: int, offset: int) -> Verdict:
        self._last_event[partition] = self._clock()
        expected = self.expected(partition)
        if expected is None or offset == expected:
            return Verdict.PROCESS
        return Verdict.DUPLICATE if offset < expected else Verdict.GAP

    def done(self, partition: int, offset: int) -> None:
        """The event at `offset` was applied: expect the next one."""
        self._progress[str(partition)] = offset + 1

    def touch(self, partition: int) -> None:
        self._last_event[partition] = self._clock()

    def quiet(self, partition: int, until: int) -> None:
        """Offsets before `until` hold nothing to apply (read directly and found empty)."""
        self._quiet_until[partition] = max(until, self._quiet_until.get(partition, 0))

    def stalled(self, log_ends: Mapping[int, int], idle_s: float) -> dict[int, int]:
        """Partitions whose log ends beyond the expected offset and that had no event for
        `idle_s`: partition -> the first offset not applied."""
        now = self._clock()
        out: dict[int, int] = {}
        for partition, end in log_ends.items():
            expected = self.expected(partition)
            idle = now - self._last_event.setdefault(partition, now) >= idle_s  # first look: not yet
            applied_to = max(expected or 0, self._quiet_until.get(partition, 0))
            if expected is not None and end > applied_to and idle:
                out[partition] = expected
        return out
