"""Apache Kafka transport over confluent-kafka (librdkafka).

confluent-kafka is on the frame path because it moves thousands of large messages a
second from C; faust (aiokafka) is kept for the low-rate stateful layer.

Delivery rules: producers are idempotent with acks=all; consumers never auto-commit and
never auto-store offsets, so an offset is committed only by the runner, after the
producer has confirmed every output of the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from facestream.errors import ConfigError, DeliveryError
from facestream.settings import KafkaSettings
from facestream.transport.base import AssignmentCallback, Envelope, Headers, Offsets
from facestream.transport.topics import TopicSpec

log = logging.getLogger(__name__)


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings shared by producers, consumers and the admin client."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        # librdkafka logs connection failures itself at level 3; the runner reports them
        # through metrics and its own log lines instead.
        "log_level": 2,
    }
    if "SASL" in settings.security_protocol:
        if not settings.sasl_username or settings.sasl_password is None:
            raise ConfigError("SASL needs both sasl_username and sasl_password")
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    if "SSL" in settings.security_protocol:
        if settings.ssl_ca_location:
            config["ssl.ca.location"] = str(settings.ssl_ca_location)
        if settings.ssl_certificate_location:
            config["ssl.certificate.location"] = str(settings.ssl_certificate_location)
        if settings.ssl_key_location:
            config["ssl.key.location"] = str(settings.ssl_key_location)
    return config


def _envelope(message: Message) -> Envelope:
    raw_headers: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    headers: Headers = tuple((k, v or b"") for k, v in raw_headers)
    _, timestamp = message.timestamp()
    return Envelope(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value() or b"",
        headers=headers,
        timestamp_ms=timestamp,
    )


class KafkaConsumer:
    def __init__(
        self, settings: KafkaSettings, group_id: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        config = {
            **client_config(settings),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only committed outputs of transactional producers are read downstream.
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            **(extra or {}),
        }
        self._consumer = CKConsumer(config)
        self._assigned: list[TopicPartition] = []

    @property
    def raw(self) -> CKConsumer:
        return self._consumer

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignmentCallback | None = None,
        on_revoke: AssignmentCallback | None = None,
    ) -> None:
        def assigned(_: CKConsumer, partitions: list[TopicPartition]) -> None:
            self._assigned.extend(partitions)
            if on_assign is not None:
                on_assign([(p.topic, p.partition) for p in partitions])

        def revoked(_: CKConsumer, partitions: list[TopicPartition]) -> None:
            gone = {(p.topic, p.partition) for p in partitions}
            self._assigned = [p for p in self._assigned if (p.topic, p.partition) not in gone]
            if on_revoke is not None:
                on_revoke(sorted(gone))

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def consume(self, max_messages: int, timeout_s: float) -> list[Envelope]:
        messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
        out = []
        for message in messages:
            error = message.error()
            if error is None:
                out.append(_envelope(message))
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal():
                raise KafkaException(error)
            else:
                log.warning("consumer: %s", error.str())
        return out

    def commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        self._consumer.commit(offsets=partitions, asynchronous=False)

    def lag(self, timeout_s: float = 5.0) -> dict[tuple[str, int], int]:
        """Per assigned partition: messages between the group's committed offset and the end.

        With no committed offset yet, everything retained counts (auto.offset.reset is
        earliest). It asks the broker, so the runner calls it every few seconds, not per
        poll; a broker that does not answer gives no numbers rather than stopping the loop.
        """
        if not self._assigned:
            return {}
        try:
            committed = self._consumer.committed(list(self._assigned), timeout=timeout_s)
            out: dict[tuple[str, int], int] = {}
            for tp in committed:
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=timeout_s, cached=False
                )
                start = tp.offset if tp.offset >= 0 else low
                out[(tp.topic, tp.partition)] = max(0, high - start)
        except KafkaException as exc:
            log.warning("consumer lag unavailable: %s", exc)
            return {}
        return out

    def pause_all(self) -> None:
        if self._assigned:
            self._consumer.pause(self._assigned)

    def resume_all(self) -> None:
        if self._assigned:
            self._consumer.resume(self._assigned)

    def close(self) -> None:
        self._consumer.close()


def read_range(
    settings: KafkaSettings, topic: str, partition: int, start: int, end: int, timeout_s: float = 15.0
) -> list[Envelope]:
    """The messages at offsets [start, end) of one partition, read directly (no group, no
    commit). Offsets that no longer exist (retention) are simply absent from the result."""
    if end <= start:
        return []
    consumer = CKConsumer(
        {
            **client_config(settings),
            "group.id": f"{settings.client_id}-read-range",  # required; never joined nor committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        out: list[Envelope] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                if message.error() is None and start <= (message.offset() or 0) < end:
                    out.append(_envelope(message))
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            last = out[-1].offset if out else start - 1
            if last >= end - 1 or (high >= 0 and last >= min(end, high) - 1):
                break
        return out
    finally:
        consumer.close()


class KafkaProducer:
    def __init__(self, settings: KafkaSettings, *, extra: dict[str, Any] | None = None) -> None:
        config = {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",  # JPEG and float vectors do not compress
            "message.max.bytes": 10_000_000,
            **(extra or {}),
        }
        self._producer = CKProducer(config)
        self._failures: list[str] = []

    @property
    def raw(self) -> CKProducer:
        return self._producer

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and len(self._failures) < 1000:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room (backpressure).
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            detail = "; ".join(failures[:3]) or f"{remaining} message(s) not acknowledged"
            raise DeliveryError(f"delivery failed: {detail}")

    def close(self) -> None:
        self._producer.flush(5)


def ensure_topics(settings: KafkaSettings, specs: Sequence[TopicSpec], timeout_s: float = 30) -> list[str]:
    """Create missing topics with explicit partitions and configs; returns the ones created."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config())
        for s in specs
        if s.name not in existing
    ]
    if not new:
        return []
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
