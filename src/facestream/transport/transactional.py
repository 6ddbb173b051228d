"""The runner's commit on Kafka (`transport.base.CommitStrategy`): the outputs, the dead letters
and the input offsets commit in one Kafka transaction (`send_offsets_to_transaction`), and
downstream reads `read_committed`. A crash or a failed commit aborts the transaction, so nothing
of the batch is ever seen twice; `rollback` aborts and seeks the consumer back so the batch is
processed again.
"""

from __future__ import annotations

from facestream.transport.base import Offsets
from facestream.transport.kafka import KafkaConsumer, TransactionalProducer


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
