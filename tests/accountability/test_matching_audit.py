"""The matcher on Kafka: its purge sweep's audit records go to the file log and to its own chain
on the `audit` topic (real broker, real Milvus Lite), sealed when it closes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from facestream.accountability.audit_chain import CHECKPOINT
from facestream.accountability.audit_kafka import read_audit_topic, verify_topic
from facestream.accountability.audit_keys import PUBLIC_KEYS_FILE, AuditSettings, load_key_ring
from facestream.accountability.clock import now_ms
from facestream.accountability.matching import open_matching
from facestream.accountability.settings import AccountabilitySettings, PolicySettings
from facestream.settings import GallerySettings, KafkaSettings, MatcherSettings, RuntimeSettings, Settings
from tests.fixtures.accountability import audit_records, grant_authorisation
from tests.fixtures.audit import AuditKey

pytestmark = pytest.mark.usefixtures("accountability_env")

PURGE_ACTIONS = ("authorisation.expire", "gallery.purge")


def test_the_matchers_purge_records_go_to_its_chain_on_the_audit_topic_too(
    kafka_topics: KafkaSettings, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FACESTREAM_AUDIT_KEY", audit_key.seed_b64)
    state = tmp_path / "gallery"
    until = now_ms() + 1500
    short = grant_authorisation(
        state, valid_until=datetime.fromtimestamp(until / 1000, tz=UTC).isoformat(), valid_from=None
    )
    while now_ms() <= until:  # let it run out
        time.sleep(0.1)
    settings = Settings(
        GallerySettings(gallery=str(state)),
        MatcherSettings(),
        AccountabilitySettings(),
        PolicySettings(purge_interval_s=3600),
        kafka_topics,
        RuntimeSettings(replica_id="pod-7"),
        AuditSettings(),
    )
    matching = open_matching(settings)  # its first sweep expires `short` and purges it
    assert matching.mirror is not None
    chain = matching.mirror.chain
    matching.close()

    in_file = [r for r in audit_records(state) if r.action in PURGE_ACTIONS]
    assert [(r.action, r.authorisation_id) for r in in_file] == [(a, short) for a in PURGE_ACTIONS]
    records, _ = read_audit_topic(kafka_topics)
    on_topic = [json.loads(v) for _, v in records]
    assert {r["chain"] for r in on_topic} == {chain} and chain.startswith("matcher-pod-7.")
    mirrored = [r for r in on_topic if r["action"] != CHECKPOINT]
    assert [(r["at_ms"], r["action"], r["authorisation_id"], r["objects"]) for r in mirrored] == [
        (r.at_ms, r.action, r.authorisation_id, dict(r.objects)) for r in in_file
    ]
    [verdict] = verify_topic(kafka_topics, load_key_ring([state / PUBLIC_KEYS_FILE], "gallery"))
    assert (verdict.ok, verdict.records, verdict.checkpoints, verdict.unsealed) == (True, 3, 1, 0)
