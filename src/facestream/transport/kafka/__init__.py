"""Apache Kafka transport over confluent-kafka (librdkafka).

confluent-kafka is on the frame path because it moves thousands of large messages a
second from C; faust (aiokafka) is kept for the low-rate stateful layer.

Delivery rules: producers are idempotent with acks=all; consumers never auto-commit and
never auto-store offsets, so an offset is committed only by the runner, after the
producer has confirmed every output of the batch. The read-process-write stages go one
step further with `TransactionalProducer`: a batch's outputs and its input offsets are
committed in one Kafka transaction, and consumers read `read_committed`, so a crash
anywhere leaves either all of a batch downstream or none of it (docs/delivery.md).

One module per concern: `client` (settings, error reports, envelopes, retry pacing shared by
all), `consumer` (the group member), `producer` (plain and transactional), `readers` (reads
outside any group) and `admin` (topics). Import from here: this package's names are the API.
"""

from __future__ import annotations

from facestream.transport.base import RecordRefused
from facestream.transport.kafka.admin import create_missing_topics, ensure_topics
from facestream.transport.kafka.client import (
    OPERATOR_ERRORS,
    RETRY_CAP_S,
    ClientErrors,
    client_config,
    next_retry_delay,
    to_envelope,
)
from facestream.transport.kafka.consumer import REBALANCE_ERRORS, KafkaConsumer, Subscription
from facestream.transport.kafka.producer import (
    RECORD_ERRORS,
    TOO_LARGE_ERRORS,
    KafkaProducer,
    ProducerFenced,
    TransactionAborted,
    TransactionalProducer,
)
from facestream.transport.kafka.readers import (
    RangeReader,
    find_key,
    group_start_offset,
    last_of_key,
    partition_of_key,
    read_range,
)

__all__ = [
    "OPERATOR_ERRORS",
    "REBALANCE_ERRORS",
    "RECORD_ERRORS",
    "RETRY_CAP_S",
    "TOO_LARGE_ERRORS",
    "ClientErrors",
    "KafkaConsumer",
    "KafkaProducer",
    "ProducerFenced",
    "RangeReader",
    "RecordRefused",
    "Subscription",
    "TransactionAborted",
    "TransactionalProducer",
    "client_config",
    "create_missing_topics",
    "ensure_topics",
    "find_key",
    "group_start_offset",
    "last_of_key",
    "next_retry_delay",
    "partition_of_key",
    "read_range",
    "to_envelope",
]
