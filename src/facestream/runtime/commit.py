"""Step 6 of the runner, the commit, as a small strategy: at-least-once or transactional.

The runner calls `begin` before it produces a batch's outputs (step 4), `commit` after the
producer has flushed them (steps 5-6), and `rollback` when any of that failed. Two ways:

- `AtLeastOnce` (the in-process transport): outputs are flushed, then the consumer commits.
  A crash in between redelivers the batch; content-derived ids make the repeat harmless.
- `Transactional` (Kafka): the outputs, the dead letters and the input offsets commit in one
  Kafka transaction (`send_offsets_to_transaction`), and downstream reads `read_committed`.
  A crash or a failed commit aborts the transaction, so nothing of the batch is ever seen
  twice; `rollback` aborts and seeks the consumer back so the batch is processed again.
"""

from __future__ import annotations

from typing import Protocol

from facestream.transport.base import Consumer, Offsets
from facestream.transport.kafka import KafkaConsumer, TransactionalProducer


class CommitStrategy(Protocol):
    def begin(self) -> None:
        """Before the batch's first output is produced."""
        ...

    def commit(self, offsets: Offsets) -> None:
        """After every output is flushed: make the batch (its offsets, in a transaction its
        outputs too) permanent; raise DeliveryError if that cannot be done."""
        ...

    def rollback(self, first: Offsets) -> bool:
        """Undo the batch and rewind to `first` (its first offsets) so it is read again.
        False: this strategy cannot undo anything (the runner must not go on)."""
        ...


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


class Transactional:
    """Outputs and input offsets in one Kafka transaction: a batch is downstream once or not at all."""

    def __init__(self, consumer: KafkaConsumer, producer: TransactionalProducer) -> None:
        self._consumer = consumer
        self._producer = producer

    def begin(self) -> None:
        self._producer.begin()

    def commit(self, offsets: Offsets) -> None:
        self._producer.commit(offsets, self._consumer.group_metadata())

    def rollback(self, first: Offsets) -> bool:
        self._producer.abort()
        self._consumer.rewind(first)
        return True
