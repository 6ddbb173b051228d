"""Noticing an input that stopped moving while it has messages to deliver.

librdkafka 2.16 can come back from a broker restart with a consumer that never finds its group
coordinator again, or whose fetchers never resume (confluentinc/librdkafka#5153): the loop keeps
polling, /healthz stays green, and nothing arrives. Only a fresh client recovers. So the runner
asks, every lag interval, where each input partition stands and hands the answers to a
`StallWatch`; when one partition has had messages ahead of it and not moved for `stall_s`, or
Kafka has not answered at all for that long, the runner rejoins the group with a new client.

`stall_s` must be longer than a batch takes and longer than an upstream transaction may stay
open (its producer's transaction timeout), so that only a stuck client is ever taken for a stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from facestream.transport.base import PartitionProgress, TopicPartition


class StallWatch:
    """Remembers since when each partition has stood still; says when that has gone on too long."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self._still: dict[TopicPartition, tuple[int, float]] = {}
        self._blind_since: float | None = None

    def observe(self, progress: Mapping[TopicPartition, PartitionProgress] | None) -> str | None:
        """Record one look (None: Kafka did not answer). Returns why the input is stalled, or None."""
        now = self._clock()
        if progress is None:
            if self._blind_since is None:
                self._blind_since = now
            if now - self._blind_since >= self.stall_s:
                return f"Kafka has not said where the input stands for {now - self._blind_since:.0f}s"
            return None
        self._blind_since = None
        stalled = []
        for tp, seen in sorted(progress.items()):
            before = self._still.get(tp)
            if not seen.behind:
                self._still.pop(tp, None)  # nothing to deliver: counting starts when there is
            elif before is None or before[0] != seen.done:
                self._still[tp] = (seen.done, now)
            elif now - before[1] >= self.stall_s:
                stalled.append(
                    f"{tp[0]}/{tp[1]} stood at offset {seen.done} with {seen.end - seen.done} "
                    f"behind it for {now - before[1]:.0f}s"
                )
        for gone in self._still.keys() - progress.keys():
            del self._still[gone]
        return "; ".join(stalled) or None

    def reset(self) -> None:
        """Forget what was seen: after a rejoin, or a pause the runner made on purpose."""
        self._still.clear()
        self._blind_since = None
