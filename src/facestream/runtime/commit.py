"""Step 6 of the runner, the commit, as a small strategy (`transport.base.CommitStrategy`).

The runner calls `begin` before it produces a batch's outputs (step 4), `commit` after the
producer has flushed them (steps 5-6), and `rollback` when any of that failed. Two ways:

- `AtLeastOnce` (here; the in-process transport): outputs are flushed, then the consumer
  commits. A crash in between redelivers the batch; content-derived ids make the repeat harmless.
- `Transactional` (transport/transactional.py, Kafka): outputs, dead letters and input offsets
  commit in one Kafka transaction. It lives with the Kafka transport so that importing the
  runner does not import a Kafka client.
"""

from __future__ import annotations

from facestream.transport.base import CommitStrategy, Consumer, Offsets

__all__ = ["AtLeastOnce", "CommitStrategy"]


class AtLeastOnce:
    """Commit the consumer's offsets after the producer flushed: a crash in between repeats a batch."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def begin(self) -> None:
        return None

    def commit(self, offsets: Offsets) -> None:
        self._consumer.commit(offsets)

    def rollback(self, first: Offsets) -> bool:
        return False
