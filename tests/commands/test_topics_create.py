"""`facestream topics create` on the real broker: every declared setting on the topics it creates,
and existing topics brought to the declared configs (partitions only grow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from facestream.commands.kafka_admin import policies
from facestream.errors import ConfigError
from facestream.settings import KafkaSettings
from facestream.transport.kafka import client_config
from facestream.transport.topics import CATALOGUE

pytestmark = pytest.mark.subprocess  # the real CLI in its own process

FACESTREAM = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "facestream"
ONE_EACH = ",".join(f"{t.name}=1" for t in CATALOGUE)
"""One partition per topic: the shared test broker stays small."""


def topics_create(settings: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(FACESTREAM),
            "topics",
            "create",
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--topic-prefix",
            settings.topic_prefix,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def results(done: subprocess.CompletedProcess[str], prefix: str) -> dict[str, dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return {row["topic"].removeprefix(prefix): row for row in map(json.loads, done.stdout.splitlines())}


def configs(settings: KafkaSettings, *names: str) -> dict[str, dict[str, str]]:
    admin = AdminClient(client_config(settings))
    resources = [ConfigResource("topic", settings.topic_prefix + name) for name in names]
    return {
        resource.name.removeprefix(settings.topic_prefix): {
            key: entry.value for key, entry in future.result(timeout=30).items()
        }
        for resource, future in admin.describe_configs(resources, request_timeout=30).items()
    }


def partitions(settings: KafkaSettings, name: str) -> int:
    admin = AdminClient(client_config(settings))
    return len(admin.list_topics(timeout=10).topics[settings.topic_prefix + name].partitions)


def test_created_topics_get_every_declared_setting(kafka_prefix: KafkaSettings) -> None:
    done = topics_create(
        kafka_prefix,
        "--partitions",
        ONE_EACH,
        "--segment-ms",
        "frames=30000",
        "--cleanup-policy",
        "hits=compact,delete,cameras=compact",
        "--replication-factor",
        "1",
    )
    rows = results(done, kafka_prefix.topic_prefix)
    assert all(row["created"] for row in rows.values())
    got = configs(kafka_prefix, "frames", "hits", "cameras")
    assert got["frames"]["segment.ms"] == "30000"
    assert got["hits"]["cleanup.policy"] == "compact,delete"
    assert got["cameras"]["cleanup.policy"] == "compact"


def test_existing_topics_are_brought_to_the_declared_config(kafka_prefix: KafkaSettings) -> None:
    """Before, a second run left existing topics as they were: new retention, segment, cleanup
    policy or partitions in the values never reached them."""
    results(topics_create(kafka_prefix, "--partitions", ONE_EACH), kafka_prefix.topic_prefix)
    # Someone lowered a topic's record limit by hand: the next run restores it.
    admin = AdminClient(client_config(kafka_prefix))
    resource = ConfigResource(
        "topic",
        kafka_prefix.topic_prefix + "matches",
        incremental_configs=[
            ConfigEntry("max.message.bytes", "1000000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)

    declared = (
        "--partitions",
        ONE_EACH.replace("frames=1", "frames=3"),
        "--retention-ms",
        "frames=300000",
        "--segment-ms",
        "frames=60000",
        "--cleanup-policy",
        "faces=compact,delete",
    )
    done = topics_create(kafka_prefix, *declared)
    rows = results(done, kafka_prefix.topic_prefix)
    assert not any(row["created"] for row in rows.values())
    assert rows["frames"]["partitions"] == 3
    assert set(rows["frames"]["altered"]) == {"retention.ms", "segment.ms"}
    assert rows["faces"]["altered"] == ["cleanup.policy"]
    assert rows["matches"]["altered"] == ["max.message.bytes"]
    assert rows["embeddings"]["altered"] == []
    assert partitions(kafka_prefix, "frames") == 3
    got = configs(kafka_prefix, "frames", "faces", "matches")
    assert got["frames"]["retention.ms"] == "300000" and got["frames"]["segment.ms"] == "60000"
    assert got["faces"]["cleanup.policy"] == "compact,delete"
    assert got["matches"]["max.message.bytes"] == str(rows["matches"]["max.message.bytes"])

    # A third run with the same declaration changes nothing.
    again = results(topics_create(kafka_prefix, *declared), kafka_prefix.topic_prefix)
    assert all(row["altered"] == [] for row in again.values())


def test_what_kafka_cannot_change_is_reported_and_left(kafka_prefix: KafkaSettings) -> None:
    results(
        topics_create(kafka_prefix, "--partitions", ONE_EACH.replace("frames=1", "frames=2")),
        kafka_prefix.topic_prefix,
    )
    done = topics_create(kafka_prefix, "--partitions", ONE_EACH, "--replication-factor", "2")
    rows = results(done, kafka_prefix.topic_prefix)
    assert rows["frames"]["partitions"] == 2
    assert partitions(kafka_prefix, "frames") == 2
    assert "cannot remove partitions" in done.stderr, done.stderr
    assert "replication factor 1, 2 declared" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("cameras=compact", {"cameras": "compact"}),
        ("hits=compact,delete,frames=delete", {"hits": "compact,delete", "frames": "delete"}),
        ("frames=delete,hits=delete,compact", {"frames": "delete", "hits": "delete,compact"}),
    ],
)
def test_cleanup_policies_parse(text: str, expected: dict[str, str]) -> None:
    assert policies(text, "--cleanup-policy") == expected


@pytest.mark.parametrize("text", ["compact", "frames=compacted", "frames=delete,compact,delete"])
def test_bad_cleanup_policies_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--cleanup-policy"):
        policies(text, "--cleanup-policy")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--segment-ms", "nosuch=60000"], "unknown topic(s): nosuch"),
        (["--segment-ms", "frames=10"], "below 1000"),
        (["--replication-factor", "0"], "--replication-factor"),
    ],
)
def test_bad_arguments_are_refused_before_kafka(args: list[str], message: str) -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="never.")
    done = topics_create(settings, *args)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
