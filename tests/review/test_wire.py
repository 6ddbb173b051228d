"""The `reviews` and `alerts.confirmed` codecs: round trips through the real schemas; bad bytes refused."""

from __future__ import annotations

import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import BBox, FrameRef
from facestream.review.messages import Alert, Decision, alert_id_for
from facestream.review.wire import ALERTS, REVIEWS

CID = "0123456789abcdef01234567"


def test_a_decision_round_trips_with_its_schema_id_and_key() -> None:
    decision = Decision.new(CID, "rita", "reject", 1_800_000_000_123)
    data = REVIEWS.encode(decision)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == codec.BUILTIN.id_of("reviews/v1.avsc")
    assert REVIEWS.decode(data) == decision and decision.key == CID.encode()
    assert Decision.new(CID, "rita", "reject", 1).decision_id != decision.decision_id


def test_an_alert_round_trips_without_losing_a_millisecond_or_a_reviewer() -> None:
    alert = Alert(
        alert_id=alert_id_for(CID),
        candidate_id=CID,
        episode_id="e" * 24,
        ref=FrameRef("cam-1", "cam-1@1800000000001", 1_800_000_000_001, "rtsp://cam-1"),
        face_index=2,
        bbox=BBox(1.5, 2.5, 100.25, 120.75),
        score=0.5,
        identity="Jane Roe",
        entry_id="entry-1",
        authorisation_id="auth_0123456789abcdef",
        model_id="arcface@abc",
        opened_at_ms=1_800_000_000_002,
        confirmed_at_ms=1_800_000_000_999,
        confirmed_by=("rita", "rob"),
        zone="north-gate",
    )
    data = ALERTS.encode(alert)
    assert int.from_bytes(data[1:5], "big") == codec.BUILTIN.id_of("alerts/v2.avsc")
    assert ALERTS.decode(data) == alert


def test_other_subjects_garbage_and_non_candidate_ids_are_invalid_messages() -> None:
    with pytest.raises(InvalidMessage) as wrong_subject:
        REVIEWS.decode(ALERTS.encode(ALERTS.decode(ALERTS.encode(_alert()))))
    assert wrong_subject.value.reason == "unknown_schema"
    with pytest.raises(InvalidMessage):
        REVIEWS.decode(b"\x00\x00\x00\x00\x07garbage")
    with pytest.raises(InvalidMessage) as bad_id:
        REVIEWS.decode(REVIEWS.encode(Decision("d", "../../etc/passwd", "rita", "confirm", 1)))
    assert bad_id.value.reason == "invalid_fields"


def _alert() -> Alert:
    return Alert(
        alert_id_for(CID), CID, "e", FrameRef("c", "c@1", 1, "s"), 0, BBox(0, 0, 1, 1), 0.5, "x", "e", "a",
        "m", 1, 2, ("a", "b"), None,
    )  # fmt: skip
