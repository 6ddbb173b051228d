"""Avro codecs of `reviews` and `alerts.confirmed` (schemas/reviews, schemas/alerts), on the
same wire format and schema index as every other topic (facestream.codec)."""

from __future__ import annotations

from typing import Any

from facestream.codec import (
    Codec,
    Record,
    avro_millis,
    bbox_from_record,
    bbox_to_record,
    frame_ref_from_record,
    frame_ref_to_record,
    zone_from_record,
)
from facestream.errors import InvalidMessage
from facestream.review.messages import CANDIDATE_ID, VERDICTS, Alert, Decision


def _decision_record(d: Decision) -> Record:
    return {
        "decision_id": d.decision_id,
        "candidate_id": d.candidate_id,
        "reviewer": d.reviewer,
        "decision": d.decision,
        "decided_at_ms": d.decided_at_ms,
    }


def _decision(record: Record) -> Decision:
    verdict: Any = record["decision"]
    if verdict not in VERDICTS:
        raise InvalidMessage("invalid_fields", f"decision {verdict!r} is not confirm or reject")
    if not CANDIDATE_ID.match(record["candidate_id"]):
        raise InvalidMessage("invalid_fields", "candidate_id is not a candidate id")
    return Decision(
        decision_id=record["decision_id"],
        candidate_id=record["candidate_id"],
        reviewer=record["reviewer"],
        decision=verdict,
        decided_at_ms=avro_millis(record["decided_at_ms"]),
    )


def _alert_record(a: Alert) -> Record:
    return {
        "alert_id": a.alert_id,
        "candidate_id": a.candidate_id,
        "episode_id": a.episode_id,
        **frame_ref_to_record(a.ref),
        "face_index": a.face_index,
        "bbox": bbox_to_record(a.bbox),
        "score": a.score,
        "identity": a.identity,
        "entry_id": a.entry_id,
        "authorisation_id": a.authorisation_id,
        "model_id": a.model_id,
        "opened_at_ms": a.opened_at_ms,
        "confirmed_at_ms": a.confirmed_at_ms,
        "confirmed_by": list(a.confirmed_by),
        "zone": a.zone,
    }


def _alert(record: Record) -> Alert:
    return Alert(
        alert_id=record["alert_id"],
        candidate_id=record["candidate_id"],
        episode_id=record["episode_id"],
        ref=frame_ref_from_record(record),
        face_index=int(record["face_index"]),
        bbox=bbox_from_record(record["bbox"]),
        score=float(record["score"]),
        identity=record["identity"],
        entry_id=record["entry_id"],
        authorisation_id=record["authorisation_id"],
        model_id=record["model_id"],
        opened_at_ms=avro_millis(record["opened_at_ms"]),
        confirmed_at_ms=avro_millis(record["confirmed_at_ms"]),
        confirmed_by=tuple(str(name) for name in record["confirmed_by"]),
        zone=zone_from_record(record),
    )


REVIEWS: Codec[Decision] = Codec("reviews", 1, _decision_record, _decision)
ALERTS: Codec[Alert] = Codec("alerts", 2, _alert_record, _alert)
