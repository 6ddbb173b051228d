"""The zone on `hits`, `matches` and `alerts.confirmed` (v2): it round trips, a record written by
v1 (before the field) still reads, with no zone, and a zone that is not a zone name is refused."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import fastavro
import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import Candidate
from facestream.review.decisions import CandidateReview, Vote
from facestream.review.wire import ALERTS
from tests.fixtures.hits import make_hit

T0 = 1_800_000_000_000


def _messages() -> dict[str, tuple[codec.Codec[Any], Any]]:
    hit = replace(make_hit("gate-3", T0, zone="north-gate"), score=0.75)  # a float32 on the wire
    candidate = Candidate.open_episode(hit)
    review = CandidateReview.of(candidate, T0 + 1_000, 60_000)
    confirmed = replace(
        review,
        status="confirmed",
        closed_at_ms=T0 + 5_000,
        confirmations=(Vote("rita", "reviewer", T0 + 2_000, "d1"), Vote("rob", "reviewer", T0 + 5_000, "d2")),
    )
    return {
        "hits": (codec.HITS, hit),
        "matches": (codec.MATCHES, candidate),
        "alerts": (ALERTS, confirmed.alert()),
    }


SUBJECTS = sorted(_messages())


def _written_by(version: int, c: codec.Codec[Any], record: dict[str, Any]) -> bytes:
    path = f"{c.subject}/v{version}.avsc"
    out = io.BytesIO()
    out.write(b"\x00" + codec.BUILTIN.id_of(path).to_bytes(4, "big"))
    fastavro.schemaless_writer(out, codec.BUILTIN.parsed(path), record)
    return out.getvalue()


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_zone_travels_from_hit_to_candidate_to_alert(subject: str) -> None:
    c, message = _messages()[subject]
    data = c.encode(message)
    assert int.from_bytes(data[1:5], "big") == codec.BUILTIN.id_of(f"{subject}/v2.avsc")
    assert c.decode(data) == message and c.decode(data).zone == "north-gate"


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_v1_record_reads_with_no_zone_and_nothing_else_lost(subject: str) -> None:
    c, message = _messages()[subject]
    record = c.to_record(message)
    del record["zone"]  # v1 has no such field: fastavro would refuse a record with it
    decoded = c.decode(_written_by(1, c, record))
    assert decoded.zone is None
    assert decoded == replace(message, zone=None)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("zone", ["", "north gate", "<b>x</b>", "zone\n", "z" * 65])
def test_a_zone_that_is_not_a_zone_name_is_an_invalid_message(subject: str, zone: str) -> None:
    """What a camera's config could not hold either: a review page or a downstream router never gets it."""
    c, message = _messages()[subject]
    record = {**c.to_record(message), "zone": zone}
    with pytest.raises(InvalidMessage) as refused:
        c.decode(_written_by(2, c, record))
    assert refused.value.reason == "invalid_fields"
    assert "zone" in str(refused.value)
