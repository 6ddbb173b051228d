"""The services' audit writer on the real broker: one record, the file log and the topic chain
alike; a record Kafka cannot take is in neither, and the next one starts a chain that verifies."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from facestream.accountability.audit import Actor, AuditLog
from facestream.accountability.audit_chain import CHECKPOINT
from facestream.accountability.audit_kafka import read_audit_topic, verify_topic
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.audit_mirror import (
    PRODUCER_CONFIG,
    AuditMirror,
    open_audit_mirror,
    writer_name,
)
from facestream.errors import AuditError, ConfigError
from facestream.runtime import metrics
from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer, client_config
from facestream.transport.topics import AUDIT
from tests.fixtures.audit import AuditKey
from tests.fixtures.kafka import free_port

RITA = Actor("rita", "reviewer")
LIMIT = 1024
"""The audit topic's max.message.bytes once the test lowers it: a short record fits, LONG does not."""
LONG = {"note": "x" * 500, "more": "y" * 500}
"""Objects the file log accepts (two labels), in a record over LIMIT."""


def mirror(
    settings: KafkaSettings, key: AuditKey, state: Path, seal_every_s: float | None = None, **producer: object
) -> AuditMirror:
    return AuditMirror(
        state,
        KafkaProducer(settings, extra={**PRODUCER_CONFIG, **producer}),
        key.signer,
        writer="review-test",
        topic_prefix=settings.topic_prefix,
        settings=AuditSettings(audit_checkpoint_every=4),
        seal_every_s=seal_every_s,
    )


def same(record: dict[str, Any]) -> tuple[Any, ...]:
    """What both stores must agree on (chain, seq and hashes are each store's own)."""
    return tuple(record[k] for k in ("at_ms", "actor", "role", "action", "authorisation_id", "objects"))


def topic_records(settings: KafkaSettings, chain: str) -> list[dict[str, Any]]:
    records, _ = read_audit_topic(settings)
    return [
        r for r in (json.loads(v) for _, v in records) if r["chain"] == chain and r["action"] != CHECKPOINT
    ]


def limit_message_size(settings: KafkaSettings, limit: int, timeout_s: float = 30) -> None:
    """Lower the audit topic's max.message.bytes, and wait until the broker enforces it."""
    admin = AdminClient(client_config(settings))
    topic = settings.topic_prefix + AUDIT
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    [done] = admin.incremental_alter_configs([resource]).values()
    done.result(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        [described] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
        if described.result(timeout=timeout_s)["max.message.bytes"].value == str(limit):
            return
        assert time.monotonic() < deadline, "the broker never applied max.message.bytes"
        time.sleep(0.1)


def test_a_record_kafka_cannot_take_is_in_neither_store_and_the_next_starts_a_new_chain(
    kafka_topics: KafkaSettings, audit_key: AuditKey, audit_gallery: Path
) -> None:
    audit = mirror(kafka_topics, audit_key, audit_gallery)
    for n in range(2):
        audit.append(actor=RITA, action="review.confirm", objects={"candidate_id": f"c{n}"})
    first = audit.chain

    limit_message_size(kafka_topics, LIMIT)
    failures = metrics.AUDIT_TOPIC_FAILURES._value.get()
    with pytest.raises(AuditError, match=r"did not take the record: .*too large"):
        audit.append(actor=RITA, action="review.confirm", objects=LONG)  # refused: too large
    assert audit.abandoned == [first] and audit.chain != first
    assert metrics.AUDIT_TOPIC_FAILURES._value.get() == failures + 1  # what the alert rule watches
    audit.append(actor=RITA, action="review.reject", objects={"candidate_id": "c2"})
    audit.close()

    file_records = [r for r in AuditLog(audit_gallery / "audit.log").records() if r.action != CHECKPOINT]
    assert [r.objects for r in file_records] == [{"candidate_id": f"c{n}"} for n in range(3)]  # not LONG
    on_topic = topic_records(kafka_topics, first) + topic_records(kafka_topics, audit.chain)
    assert [same(r) for r in on_topic] == [
        same(dataclasses.asdict(r)) for r in file_records
    ]  # same at_ms too
    verdicts = {v.chain: v for v in verify_topic(kafka_topics, audit_key.ring)}
    assert set(verdicts) == {first, audit.chain}
    assert all(v.ok for v in verdicts.values()), [(v.chain, v.problem) for v in verdicts.values()]
    assert verdicts[audit.chain].unsealed == 0  # closed: sealed by a checkpoint
    assert verdicts[first].records == 2 and verdicts[first].unsealed == 2  # given up, as a crashed writer's


def test_a_quiet_writer_seals_its_chain_within_seal_every_s(
    kafka_topics: KafkaSettings, audit_key: AuditKey, audit_gallery: Path
) -> None:
    audit = mirror(kafka_topics, audit_key, audit_gallery, seal_every_s=0.2)
    try:
        audit.append(actor=RITA, action="candidate.open", objects={"candidate_id": "c0"})
        deadline = time.monotonic() + 30
        while True:
            [verdict] = verify_topic(kafka_topics, audit_key.ring)
            if verdict.unsealed == 0:
                break
            assert time.monotonic() < deadline, "no periodic checkpoint sealed the record"
            time.sleep(0.2)
        assert (verdict.chain, verdict.ok, verdict.records, verdict.checkpoints) == (audit.chain, True, 2, 1)
    finally:
        audit.close()


def test_an_unreachable_broker_fails_the_append_and_writes_nothing(
    kafka_prefix: KafkaSettings, audit_key: AuditKey, audit_gallery: Path
) -> None:
    nowhere = kafka_prefix.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    audit = mirror(nowhere, audit_key, audit_gallery, **{"message.timeout.ms": 1500})
    with pytest.raises(AuditError, match="did not take the record"):
        audit.append(actor=RITA, action="candidate.open", objects={"candidate_id": "c0"})
    assert not (audit_gallery / "audit.log").exists()
    audit.close()
    with pytest.raises(AuditError, match="closed"):
        audit.append(actor=RITA, action="candidate.open", objects={"candidate_id": "c0"})


def test_opening_it_without_the_audit_topic_is_a_config_error(
    kafka_prefix: KafkaSettings, audit_env: AuditKey, audit_gallery: Path
) -> None:
    with pytest.raises(ConfigError, match="audit does not exist"):
        open_audit_mirror(audit_gallery, kafka_prefix, AuditSettings(), "matcher-0")


def test_writer_names_are_valid_chain_names() -> None:
    assert writer_name("matcher", "matcher-0") == "matcher-matcher-0"
    assert (
        writer_name("review", "pod/with:odd chars" + "x" * 100)
        == ("review-pod-with-odd-chars" + "x" * 100)[:64]
    )
    assert writer_name("review").startswith("review-")
