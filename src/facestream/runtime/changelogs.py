"""A faust app's changelog topics, created before the app starts.

faust creates a table's changelog while it starts, a few milliseconds before its consumer
asks Kafka about the topics it subscribes to. A broker that has not yet applied the new
topic answers without it; aiokafka then counts the changelog as 0 partitions until its next
metadata refresh (five minutes), and the table's first write stops the app with
PartitionsMismatch ("... changelog ... has 0 partitions"). CI saw exactly that on a loaded
machine. Created here first, with the settings faust would give them, and awaited until Kafka
serves them, they are in the consumer's first answer; faust finds them and creates nothing.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from mode.utils.times import want_seconds

from facestream.settings import KafkaSettings
from facestream.transport.kafka import create_missing_topics


def changelog_topics(app: Any) -> list[NewTopic]:
    """Each table's changelog as faust would create it (faust's aiokafka `_topic_config`):
    cleanup policy from compacting/deleting, retention, then the table's extra topic configs."""
    wanted = []
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = [flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on]
        config = {"cleanup.policy": ",".join(policy)} if policy else {}
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config.update({key: str(value) for key, value in (topic.config or {}).items()})
        wanted.append(
            NewTopic(
                topic.get_topic_name(),
                num_partitions=topic.partitions or app.conf.topic_partitions,
                replication_factor=topic.replicas or app.conf.topic_replication_factor or 1,
                config=config,
            )
        )
    return wanted


def declare_changelogs(kafka: KafkaSettings, app: Any, timeout_s: float = 60) -> list[str]:
    """Create the app's missing changelog topics and wait until Kafka serves all of them;
    returns the ones created. Blocking: call it before `app.start()`."""
    return create_missing_topics(kafka, changelog_topics(app), timeout_s)
