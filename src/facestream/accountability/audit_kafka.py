"""The audit log in Kafka mode: the same records, on the `audit` topic (delete policy, never compacted).

Several services append at once (matcher replicas, the review app), and a single global
chain would need them to take turns. So each writer keeps its own chain: the chain id is
the record key (one writer's records stay in order on one partition), a checkpoint signs
the chain's head every `checkpoint_every` records, on `checkpoint()` and on `close()`, and
the verifier checks each chain separately. What Kafka adds: records are never rewritten in
place, so the file log's head seal is not needed; what it cannot show alone is a writer's
last records lost after its last checkpoint, which the verdict reports as `unsealed`.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from facestream.accountability.audit import AuditWriter
from facestream.accountability.audit_chain import (
    CHECKPOINT,
    ChainHead,
    canonical,
    checkpoint_record,
    head_after,
)
from facestream.accountability.audit_keys import KeyRing, Signer
from facestream.accountability.audit_verify import Verdict, verify_chains
from facestream.accountability.clock import now_ms
from facestream.errors import AuditError, ConfigError
from facestream.settings import KafkaSettings
from facestream.transport.base import Producer
from facestream.transport.kafka import client_config
from facestream.transport.topics import AUDIT

_WRITER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class KafkaAuditLog(AuditWriter):
    """An audit writer over any `Producer`; `sync` flushes after each append (off when the caller's
    runner flushes the same producer before committing, as the matcher's does)."""

    def __init__(
        self,
        producer: Producer,
        signer: Signer,
        *,
        writer: str,
        topic_prefix: str = "",
        checkpoint_every: int = 100,
        sync: bool = True,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if not _WRITER.match(writer):
            raise ConfigError(f"audit writer name {writer!r}: 1-64 letters, digits, . _ -")
        self.topic = topic_prefix + AUDIT
        self.chain = f"{writer}.{uuid.uuid4().hex[:12]}"
        self._producer = producer
        self._signer = signer
        self._every = checkpoint_every
        self._sync = sync
        self._clock = clock
        self._head = ChainHead.start(self.chain)
        self._since_checkpoint = 0
        self._mutex = threading.Lock()

    def _add(self, next_record: Callable[[ChainHead], dict[str, Any]]) -> dict[str, Any]:
        with self._mutex:
            rec = next_record(self._head)
            self._send(rec)
            self._since_checkpoint += 1
            if self._since_checkpoint + 1 >= self._every:
                self._send(checkpoint_record(self._head, self._signer, self._clock()))
            if self._sync:
                self._producer.flush(30)
        return rec

    def checkpoint(self) -> None:
        """Sign the head now (call it periodically, e.g. every minute, so little is ever unsealed)."""
        with self._mutex:
            if self._since_checkpoint:
                self._send(checkpoint_record(self._head, self._signer, self._clock()))
            self._producer.flush(30)

    def close(self) -> None:
        """Seal the chain; the producer belongs to the caller and stays open."""
        self.checkpoint()

    def _send(self, rec: dict[str, Any]) -> None:
        self._producer.produce(self.topic, canonical(rec), key=self.chain.encode())
        self._head = head_after(rec)
        if rec["action"] == CHECKPOINT:
            self._since_checkpoint = 0


def read_audit_topic(settings: KafkaSettings, timeout_s: float = 30) -> tuple[list[tuple[int, bytes]], bool]:
    """Every record now on the audit topic as (offset, value), and whether retention has removed
    its beginning (then chains may start after seq 0)."""
    topic = settings.topic_prefix + AUDIT
    consumer = CKConsumer(
        {
            **client_config(settings),
            "group.id": f"facestream-audit-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise ConfigError(f"audit topic {topic} not found on {settings.bootstrap_servers}")
        ends: dict[int, tuple[int, int]] = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in metadata.partitions
        }
        trimmed = any(low > 0 for low, _ in ends.values())
        out: list[tuple[int, bytes]] = []
        for partition, (low, high) in sorted(ends.items()):
            out.extend(_read_partition(consumer, topic, partition, low, high, timeout_s))
        return out, trimmed
    finally:
        consumer.close()


def _read_partition(
    consumer: CKConsumer, topic: str, partition: int, low: int, high: int, timeout_s: float
) -> list[tuple[int, bytes]]:
    """Records [low, high) of one partition; waits at most `timeout_s` without progress."""
    if high <= low:
        return []
    consumer.assign([TopicPartition(topic, partition, low)])
    out: list[tuple[int, bytes]] = []
    position, deadline = low, time.monotonic() + timeout_s
    while position < high:
        # consume() waits for all `num_messages` or the timeout: ask for what is left, briefly.
        batch = consumer.consume(num_messages=min(high - position, 500), timeout=0.5)
        for message in batch:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            offset = message.offset() or 0
            out.append((offset, message.value() or b""))
            position = offset + 1
            deadline = time.monotonic() + timeout_s
        if not batch:
            (now,) = consumer.position([TopicPartition(topic, partition)])
            if now.offset >= high:  # only control records were left
                break
            if time.monotonic() > deadline:
                raise AuditError(f"audit topic {topic}[{partition}]: no records after offset {position}")
    return out


def verify_topic(settings: KafkaSettings, keys: KeyRing) -> list[Verdict]:
    records, trimmed = read_audit_topic(settings)
    return verify_chains(records, keys, late_start_ok=trimmed)
