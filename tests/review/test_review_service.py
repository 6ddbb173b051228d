"""`facestream review` against the real broker: the two-person rule in faust, a restart between the
two confirmations, rejection, expiry, revocation, refused and forged decisions, crops purged,
and the audit log and transparency report that follow from all of it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from facestream.accountability.audit_kafka import read_audit_topic
from facestream.review.messages import alert_id_for
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import run_cli
from tests.fixtures.audit import make_key
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.integration.processes import FACESTREAM, ServiceProcess, kafka_args, services, wait_until
from tests.review.world import World, build_world, environment

T0 = 1_795_000_000_000
WINDOW_S = 20
"""Long enough for a loaded CI machine to decide and revoke inside it; the test waits it out."""


@pytest.fixture
def world(
    kafka_prefix: KafkaSettings, tmp_path: Path, faces_dir: Path, finder: FaceFinder, embedder: FaceEmbedder
) -> Iterator[World]:
    key = make_key(tmp_path)
    with environment(key):
        yield build_world(tmp_path, kafka_prefix, faces_dir, finder, embedder.model_id, key)


def wait_for_audit(
    world: World, action: str, count: int, proc: ServiceProcess, timeout_s: float = 60
) -> None:
    wait_until(lambda: len(world.actions(action)) >= count, timeout_s, f"{count} x {action}", proc)


def crop_changelog(world: World) -> dict[str, list[bytes]]:
    """candidate id -> the values its crop had on the crops table's changelog (b"" = deleted)."""
    topic = f"{world.kafka.topic_prefix}review-review-crops-changelog"
    out: dict[str, list[bytes]] = {}
    for env in read_topic(world.kafka, topic, 1, timeout_s=30):
        out.setdefault((env.key or b"").decode(), []).append(env.value)
    return out


def topic_config(settings: KafkaSettings, topic: str) -> dict[str, str]:
    admin = AdminClient(client_config(settings))
    [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {name: entry.value for name, entry in future.result(timeout=15).items()}


def test_two_different_reviewers_make_one_alert_and_the_first_confirmation_survives_a_restart(
    world: World, tmp_path: Path
) -> None:
    cand = world.candidate("obama", "obama", "cam-north-1", T0)
    with services(tmp_path) as running:
        first = world.start(running)
        world.publish(cand)
        wait_for_audit(world, "candidate.open", 1, first)
        world.decide(cand.candidate_id, "rita", "confirm")
        world.decide(cand.candidate_id, "rita", "confirm")  # the same reviewer again: counts once
        wait_for_audit(world, "review.confirm", 2, first)
        assert first.metric("facestream_review_pending_candidates") == 1
        assert first.metric("facestream_alerts_confirmed_total") == 0
        assert first.terminate() == 0

        group, prefix = world.kafka.topic_prefix + "review", world.kafka.topic_prefix
        for topic in (prefix + topics.MATCHES, prefix + topics.REVIEWS):
            ends = {p: end for p, end in end_offsets(world.kafka, topic).items() if end > 0}
            assert committed_offsets(world.kafka, group, topic) == ends, topic  # nothing will be redelivered
        assert read_topic(world.kafka, world.topic(topics.ALERTS_CONFIRMED), 0, timeout_s=1) == []

        second = world.start(running)  # recovers rita's confirmation from the changelog, or not at all
        world.decide(cand.candidate_id, "rob", "confirm")
        [alert] = world.alerts(1)
        assert alert.alert_id == alert_id_for(cand.candidate_id)
        assert alert.confirmed_by == ("rita", "rob")
        assert (alert.candidate_id, alert.identity, alert.ref, alert.zone) == (
            cand.candidate_id,
            "obama",
            cand.ref,
            "riverside",
        )
        assert alert.authorisation_id == world.authorisation and alert.entry_id == world.entries["obama"]
        wait_until(lambda: second.metric("facestream_review_pending_candidates") == 0, 30, "gauges", second)
        assert second.metric("facestream_alerts_confirmed_total") == 1
        assert second.metric("facestream_review_decisions_total", {"decision": "confirmed"}) == 1
        assert second.terminate() == 0

    confirms = world.actions("review.confirm")
    assert [(r["actor"], r["role"], r["objects"]["counted"]) for r in confirms] == [
        ("rita", "reviewer", True),
        ("rita", "reviewer", False),
        ("rob", "reviewer", True),
    ]
    assert confirms[-1]["objects"]["status"] == "confirmed"
    [confirmed] = world.actions("alert.confirmed")
    assert confirmed["objects"]["alert_id"] == alert.alert_id
    assert confirmed["objects"]["confirmed_by"] == ["rita", "rob"]
    assert confirmed["authorisation_id"] == world.authorisation
    # the crop lived on its changelog only until the decision: its last value is a deletion
    history = crop_changelog(world)[cand.candidate_id]
    assert history[0] and history[-1] == b""
    config = topic_config(world.kafka, f"{world.kafka.topic_prefix}review-review-crops-changelog")
    assert config["cleanup.policy"] == "compact,delete" and config["retention.ms"] == str(86_400_000)
    verified = run_cli(
        "audit", "verify", "--gallery", str(world.state), "--public-key", str(world.audit_key.public_file),
        "--actor", "audrey",
    )  # fmt: skip
    assert verified.status == 0, verified.stdout + verified.stderr
    assert_mirrored_on_the_audit_topic(world, runs=2)


REVIEW_ACTIONS = ("candidate.", "review.", "alert.")
SAME = ("at_ms", "actor", "role", "action", "authorisation_id", "objects")
"""What a record has in common in both stores (chain, seq and hashes are each store's own)."""


def assert_mirrored_on_the_audit_topic(world: World, runs: int) -> None:
    """The service's records are on the `audit` topic too, one chain per run, each sealed on exit,
    and `audit verify --kafka` accepts them with the state directory's public key."""
    in_file = [r for r in world.actions() if r["action"].startswith(REVIEW_ACTIONS)]
    records, _ = read_audit_topic(world.kafka)
    on_topic = [json.loads(value) for _, value in records]  # one partition: in the order written
    chains = list(dict.fromkeys(r["chain"] for r in on_topic))
    assert len(chains) == runs and all(c.startswith("review-") for c in chains), chains
    mirrored = [r for r in on_topic if r["action"] != "audit.checkpoint"]
    assert [[r[k] for k in SAME] for r in mirrored] == [[r[k] for k in SAME] for r in in_file]
    verified = run_cli(
        "audit", "verify", "--kafka", *kafka_args(world.kafka), "--gallery", str(world.state),
        "--public-key", str(world.state / "audit.pub"), "--actor", "audrey",
    )  # fmt: skip
    assert verified.status == 0, verified.stdout + verified.stderr
    verdicts = [json.loads(line) for line in verified.stdout.splitlines()]
    assert sorted(v["chain"] for v in verdicts) == sorted(chains)
    assert all(v["ok"] and v["unsealed"] == 0 for v in verdicts), verdicts  # sealed on SIGTERM
    assert sum(v["records"] - v["checkpoints"] for v in verdicts) == len(in_file)


def test_rejection_expiry_revocation_and_refusals_are_audited_and_reported(
    world: World, tmp_path: Path
) -> None:
    granted = run_cli(
        "authorisation", "grant", "--gallery", str(world.state), "--case", "CASE-2026-0077",
        "--basis", "test", "--purpose", "missing", "--issued-by", "pytest",
        "--valid-until", "2099-01-01T00:00:00Z", "--actor", "arthur",
    )  # fmt: skip
    assert granted.status == 0, granted.stderr
    second_auth = granted.json()[0]["id"]
    rejected = world.candidate("obama", "kit_harington_unenrolled", "cam-east-2", T0 + 1000, score=0.42)
    expiring = world.candidate("obama", "obama", "cam-east-3", T0 + 2000)
    forged = world.candidate("obama", "obama", "cam-east-4", T0 + 3000)
    revoked = world.candidate("biden", "alex_lacamoire", "cam-east-5", T0 + 4000)
    revoked = dataclasses.replace(revoked, authorisation_id=second_auth)
    started = time.time()
    with services(tmp_path) as running:
        proc = world.start(running, "--review-window-s", str(WINDOW_S))
        world.publish(rejected, expiring, forged, revoked)
        wait_for_audit(world, "candidate.open", 4, proc)
        # Revoked first, well inside the window, so that a slow machine cannot let the window end first.
        revoke = run_cli(
            "authorisation", "revoke", "--gallery", str(world.state), second_auth, "--actor", "arthur"
        )
        assert revoke.status == 0, revoke.stderr
        wait_for_audit(world, "candidate.expire", 1, proc)

        world.decide(rejected.candidate_id, "rita", "confirm")
        world.decide(rejected.candidate_id, "rob", "reject")
        world.decide(forged.candidate_id, "oscar", "confirm")  # an officer, not a reviewer
        world.decide("f" * 24, "rita", "confirm")  # no such candidate
        world.publish_raw(topics.REVIEWS, b"\x00\x00\x00\x00\x07not avro", b"x")
        wait_for_audit(world, "review.reject", 1, proc)
        world.decide(rejected.candidate_id, "rita", "confirm")  # after the rejection: closed
        wait_for_audit(world, "review.refused", 3, proc)
        wait_for_audit(world, "candidate.expire", 3, proc, timeout_s=60)
        assert time.time() - started >= WINDOW_S  # the window candidates expired at its end, not before
        wait_until(lambda: proc.metric("facestream_review_pending_candidates") == 0, 30, "gauges", proc)
        assert proc.metric("facestream_review_decisions_total", {"decision": "rejected"}) == 1
        assert proc.metric("facestream_review_decisions_total", {"decision": "expired"}) == 3
        assert proc.metric("facestream_review_votes_total", {"result": "refused"}) == 3
        assert proc.metric("facestream_dlq_messages_total", {"stage": "review"}) == 1
        assert proc.running
        assert proc.terminate() == 0

    assert world.alerts(0, timeout_s=1) == []
    refused = {r["objects"]["candidate_id"]: r for r in world.actions("review.refused")}
    assert refused[forged.candidate_id]["objects"]["reason"] == "not_reviewer"
    assert (refused[forged.candidate_id]["actor"], refused[forged.candidate_id]["role"]) == (
        "oscar",
        "unverified",
    )
    assert refused["f" * 24]["objects"]["reason"] == "unknown"
    assert refused[rejected.candidate_id]["objects"]["reason"] == "closed"
    [reject] = world.actions("review.reject")
    assert (reject["actor"], reject["role"], reject["objects"]["candidate_id"]) == (
        "rob",
        "reviewer",
        rejected.candidate_id,
    )
    reasons = {
        r["objects"]["candidate_id"]: r["objects"]["reason"] for r in world.actions("candidate.expire")
    }
    assert reasons == {
        expiring.candidate_id: "window",
        forged.candidate_id: "window",
        revoked.candidate_id: "authorisation_ended",
    }
    dead = read_topic(world.kafka, world.topic(topics.dlq("review")), 1)
    assert [e.value for e in dead] == [b"\x00\x00\x00\x00\x07not avro"]
    assert dict(dead[0].headers)["fs.dlq.reason"] == b"undecodable"  # id 7 is reviews/v1; body cut

    crops = crop_changelog(world)
    # Every crop still on the changelog was deleted at its candidate's end; one gone altogether
    # went with its segment by age (retention is the review window), the other way a crop ends.
    assert set(crops) <= {c.candidate_id for c in (rejected, expiring, forged, revoked)}
    assert all(history[-1] == b"" for history in crops.values())

    report = run_cli(
        "report", "transparency", "--gallery", str(world.state), "--from", "2026-01-01", "--to", "2099-01-01",
        "--format", "json", "--actor", "audrey",
    )  # fmt: skip
    assert report.status == 0, report.stderr
    counts = {a["authorisation_id"]: a for a in json.loads(report.stdout)["authorisations"]}
    assert {
        k: counts[world.authorisation][k] for k in ("candidates", "confirmed", "rejected", "expired")
    } == {
        "candidates": 3,
        "confirmed": 0,
        "rejected": 1,
        "expired": 2,
    }
    assert {k: counts[second_auth][k] for k in ("candidates", "confirmed", "rejected", "expired")} == {
        "candidates": 1,
        "confirmed": 0,
        "rejected": 0,
        "expired": 1,
    }
    assert_mirrored_on_the_audit_topic(world, runs=1)


def test_the_service_refuses_to_start_without_its_topics(kafka_prefix: KafkaSettings, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    done = subprocess.run(
        [str(FACESTREAM), "review", "--gallery", str(state), *kafka_args(kafka_prefix), "--metrics-port", "0",
         "--review-port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [error] = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert f"{kafka_prefix.topic_prefix}matches does not exist" in error and "topics create" in error
