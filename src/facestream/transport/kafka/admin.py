"""Topics: create those missing, with their declared partitions and configs, and wait until Kafka
serves them (a topic is usable a moment after CreateTopics answers, not at once)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from facestream.errors import FacestreamError
from facestream.settings import KafkaSettings
from facestream.transport.kafka.client import client_config
from facestream.transport.topics import TopicSpec


def ensure_topics(settings: KafkaSettings, specs: Sequence[TopicSpec], timeout_s: float = 30) -> list[str]:
    """Create missing topics with explicit partitions and configs; returns the ones created."""
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config()) for s in specs
    ]
    return create_missing_topics(settings, wanted, timeout_s)


def create_missing_topics(
    settings: KafkaSettings, wanted: Sequence[NewTopic], timeout_s: float = 30
) -> list[str]:
    """Create those of `wanted` that do not exist; returns the ones created, once Kafka serves
    every one of `wanted` with a leader for each partition.

    CreateTopics answers when the controller has recorded a topic; the broker serves it a
    moment later. A client asking for it in between is told it does not exist, and some
    believe that for minutes (faust's consumer then counts a changelog as 0 partitions).
    """
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in wanted if t.topic not in existing]
    created = []
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _await_leaders(admin, [t.topic for t in wanted], timeout_s)
    return created


def _await_leaders(admin: AdminClient, names: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        served = admin.list_topics(timeout=timeout_s).topics
        waiting = [
            name
            for name in names
            if (topic := served.get(name)) is None
            or topic.error is not None
            or not topic.partitions
            or any(p.leader < 0 or p.error is not None for p in topic.partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise FacestreamError(f"Kafka does not serve {', '.join(waiting)} after {timeout_s:.0f}s")
        time.sleep(0.1)
