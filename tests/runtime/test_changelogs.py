"""The faust apps' changelog topics are created before the apps start, exactly as faust itself
would create them (runtime/changelogs.py): same partitions, cleanup policy and retention, so
that a deployment never sees two different changelog layouts depending on who came first."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from facestream.review.app import ReviewApp, ReviewConfig
from facestream.runtime.changelogs import declare_changelogs
from facestream.runtime.episodes_app import EpisodesApp, EpisodesConfig
from facestream.settings import KafkaSettings
from facestream.transport.kafka import client_config

COMPARED = ("cleanup.policy", "retention.ms", "segment.ms")
Layout = dict[str, tuple[int, dict[str, str]]]


def episodes_app(kafka: KafkaSettings, tmp_path: Path, app_id: str) -> Any:
    config = EpisodesConfig(
        kafka=kafka, app_id=kafka.topic_prefix + app_id, data_dir=tmp_path / app_id, gap_ms=30_000,
        partitions=2, replication=1,
    )  # fmt: skip
    return EpisodesApp(config).build()


def review_app(kafka: KafkaSettings, tmp_path: Path, app_id: str) -> Any:
    config = ReviewConfig(
        kafka=kafka, app_id=kafka.topic_prefix + app_id, data_dir=tmp_path / app_id, window_ms=600_000,
        keep_closed_ms=60_000, confirmations=2, sweep_interval_s=5, partitions=2, reviews_partitions=2,
        replication=1,
    )  # fmt: skip
    unused: Any = None  # building the app calls none of these
    return ReviewApp(config, audit=unused, role_of=unused, authorised=unused).build()


def layout(kafka: KafkaSettings, app: Any) -> Layout:
    """Changelog (by table name) -> (partitions, the configs compared), as the broker has them."""
    admin = AdminClient(client_config(kafka))
    names = {table.changelog_topic.get_topic_name(): name for name, table in app.tables.items()}
    served = admin.list_topics(timeout=10).topics
    futures = admin.describe_configs([ConfigResource("topic", topic) for topic in names])
    found: Layout = {}
    for resource, future in futures.items():
        entries = future.result(timeout=10)
        partitions = served[resource.name].partitions
        assert all(p.leader >= 0 for p in partitions.values()), resource.name
        found[names[resource.name]] = (len(partitions), {key: entries[key].value for key in COMPARED})
    return found


def created_by_faust(build: Any, kafka: KafkaSettings, tmp_path: Path) -> Layout:
    """Start and stop an app without declaring anything first: faust creates its changelogs."""

    async def start_and_stop() -> Any:
        app = build(kafka, tmp_path, "by-faust")
        await app.start()
        await app.stop()
        return app

    app = asyncio.run(start_and_stop())
    for reader in getattr(app, "readers", ()):
        reader.close()
    return layout(kafka, app)


def test_the_episode_steps_changelogs_are_the_ones_faust_creates(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    ours = episodes_app(kafka_topics, tmp_path, "by-us")
    created = declare_changelogs(kafka_topics, ours)

    assert sorted(created) == sorted(t.changelog_topic.get_topic_name() for t in ours.tables.values())
    assert set(layout(kafka_topics, ours)) == {"episodes", "progress"}
    assert layout(kafka_topics, ours) == created_by_faust(episodes_app, kafka_topics, tmp_path)
    assert declare_changelogs(kafka_topics, ours) == [], "a second declaration creates nothing"


def test_the_review_services_changelogs_are_the_ones_faust_creates(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    ours = review_app(kafka_topics, tmp_path, "by-us")
    declare_changelogs(kafka_topics, ours)

    found = layout(kafka_topics, ours)
    assert found["review-crops"][1]["cleanup.policy"] == "compact,delete"
    assert found["review-crops"][1]["retention.ms"] == "600000"
    assert found == created_by_faust(review_app, kafka_topics, tmp_path)
    assert declare_changelogs(kafka_topics, ours) == []
