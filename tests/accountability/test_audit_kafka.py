"""The audit log in Kafka mode, on the real broker: per-writer chains, verification, the topic's config."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from facestream.accountability.audit import Actor
from facestream.accountability.audit_chain import CHECKPOINT, canonical, record_hash
from facestream.accountability.audit_kafka import KafkaAuditLog, read_audit_topic, verify_topic
from facestream.cli import main
from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer, client_config
from facestream.transport.topics import AUDIT, AUDIT_MIN_RETENTION_MS, catalogue
from tests.fixtures.audit import AuditKey

MATCHER = Actor("matcher-0", "system")


def test_two_writers_chains_verify_and_a_forged_record_is_named_by_offset(
    kafka_topics: KafkaSettings, audit_key: AuditKey
) -> None:
    producer = KafkaProducer(kafka_topics)
    writers = [
        KafkaAuditLog(
            producer,
            audit_key.signer,
            writer=f"matcher-{i}",
            topic_prefix=kafka_topics.topic_prefix,
            checkpoint_every=4,
        )
        for i in range(2)
    ]
    for n in range(10):
        for w in writers:
            w.append(actor=MATCHER, action="candidate.open", authorisation_id="auth_1", objects={"n": n})
    for w in writers:
        w.close()

    verdicts = verify_topic(kafka_topics, audit_key.ring)
    assert sorted(v.chain or "" for v in verdicts) == sorted(w.chain for w in writers)
    # 10 records each; checkpoints after every 3 and on close: 4 per chain, nothing unsealed.
    assert [(v.ok, v.records, v.checkpoints, v.unsealed) for v in verdicts] == [(True, 14, 4, 0)] * 2

    # Someone with write access to the topic (but not the key) adds a record to one chain.
    records, _ = read_audit_topic(kafka_topics)
    victim = writers[0].chain
    offset, value = next((o, v) for o, v in records if json.loads(v)["chain"] == victim and b"candidate" in v)
    forged = json.loads(value)
    forged["objects"] = {"n": 999}
    forged["hash"] = record_hash(forged)
    producer.produce(kafka_topics.topic_prefix + AUDIT, canonical(forged), key=victim.encode())
    producer.flush(30)

    by_chain = {v.chain: v for v in verify_topic(kafka_topics, audit_key.ring)}
    assert by_chain[writers[1].chain].ok
    bad = by_chain[victim].problem
    assert bad is not None and bad.line > offset and bad.seq == forged["seq"]
    assert "inserted or moved" in bad.reason
    producer.close()


def test_the_command_verifies_the_topic(
    kafka_topics: KafkaSettings,
    audit_key: AuditKey,
    audit_gallery: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    producer = KafkaProducer(kafka_topics)
    writer = KafkaAuditLog(
        producer, audit_key.signer, writer="review", topic_prefix=kafka_topics.topic_prefix
    )
    writer.append(actor=Actor("rita", "reviewer"), action="review.confirm", objects={"candidate_id": "c1"})
    writer.close()
    args = [
        "audit", "verify", "--kafka", "--gallery", str(audit_gallery),
        "--bootstrap-servers", kafka_topics.bootstrap_servers, "--topic-prefix", kafka_topics.topic_prefix,
        "--public-key", str(audit_key.public_file),
    ]  # fmt: skip
    assert main(args) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["chain"], o["ok"], o["records"], o["checkpoints"]) for o in out] == [
        (writer.chain, True, 2, 1)
    ]

    records, _ = read_audit_topic(kafka_topics)
    last = json.loads(records[-1][1])
    assert last["action"] == CHECKPOINT
    producer.produce(kafka_topics.topic_prefix + AUDIT, records[0][1], key=writer.chain.encode())  # a replay
    producer.flush(30)
    assert main(args) == 1
    assert "fails verification at offset" in capsys.readouterr().err
    producer.close()


def test_the_audit_topic_keeps_records_six_months_and_is_never_compacted(kafka_topics: KafkaSettings) -> None:
    admin = AdminClient(client_config(kafka_topics))
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka_topics.topic_prefix + AUDIT)
    deadline = time.monotonic() + 30
    while True:  # a topic just created may not be known to every part of the broker yet
        try:
            config = admin.describe_configs([resource])[resource].result(timeout=30)
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert config["cleanup.policy"].value == "delete"
    assert int(config["retention.ms"].value) >= AUDIT_MIN_RETENTION_MS
    assert 0 < int(config["segment.ms"].value) <= int(config["retention.ms"].value)


def test_the_catalogue_refuses_a_shorter_audit_retention() -> None:
    with pytest.raises(ValueError, match="six months"):
        catalogue(retention_ms={AUDIT: 30 * 86_400_000})
    kept = {t.name: t for t in catalogue(retention_ms={AUDIT: -1})}
    assert kept[AUDIT].retention_ms == -1 and kept[AUDIT].cleanup_policy == "delete"
