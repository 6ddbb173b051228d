"""Group and transactional ids: per deployment (topic prefix) and per replica."""

from __future__ import annotations

from facestream.runtime.service import group_id, transactional_id
from facestream.settings import KafkaSettings, RuntimeSettings


def test_default_group_ids_carry_the_topic_prefix() -> None:
    """Two deployments on one cluster (prefixes city1., city2.) never share a consumer group."""
    city1, city2 = KafkaSettings(topic_prefix="city1."), KafkaSettings(topic_prefix="city2.")

    assert group_id(city1, RuntimeSettings(), "detector") == "city1.facestream-detector"
    assert group_id(city2, RuntimeSettings(), "detector") == "city2.facestream-detector"
    assert group_id(city1, RuntimeSettings(group_id="mine"), "detector") == "mine"


def test_transactional_ids_are_stable_per_replica_and_distinct_between_replicas() -> None:
    named = RuntimeSettings(replica_id="detector-0")
    assert transactional_id("g", named) == transactional_id("g", named) == "g.detector-0"
    assert transactional_id("g", RuntimeSettings(replica_id="detector-1")) != "g.detector-0"
    unnamed = transactional_id("g", RuntimeSettings())
    assert unnamed.startswith("g.") and unnamed != "g.detector-0"
