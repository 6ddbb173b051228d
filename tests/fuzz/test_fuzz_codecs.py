"""Fuzzing every topic decoder: whatever lands on a topic, decoding raises nothing but InvalidMessage.

Three kinds of input per subject: random bytes behind a valid header, byte-level mutations of a
valid message, and well-formed Avro records whose fields hold anything the schema allows (NaN,
infinities, extreme ints, empty and huge strings and arrays) — the last reaches the checks that
run after the schema (vector norm, crop size, decision names). A decoded message must also be
usable: it encodes again (nothing the codec accepts breaks the next producer).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import ALIGNED_BYTES, BBox, Embedding, Face, Frame, FrameRef, Quality
from facestream.review.wire import ALERTS, REVIEWS
from tests.fuzz.strategies import fuzz, mutated, wire_records

CODECS: list[codec.Codec[Any]] = [
    codec.CAMERAS,
    codec.FRAMES,
    codec.FACES,
    codec.EMBEDDINGS,
    codec.HITS,
    codec.MATCHES,
    codec.EPISODES,
    REVIEWS,
    ALERTS,
]
IDS = [c.subject for c in CODECS]


def decode_or_invalid(c: codec.Codec[Any], data: bytes) -> object | None:
    """The decoded message, or None when it was refused with a reason (anything else escapes)."""
    try:
        message = c.decode(data)
    except InvalidMessage as exc:
        assert exc.reason and exc.reason.replace("_", "").isalpha(), exc.reason
        return None
    c.encode(message)  # what was accepted can be written again
    return message


def test_every_subject_of_the_schema_index_is_fuzzed() -> None:
    assert {path.split("/")[0] for path in codec.schema_index().values()} == set(IDS)


@pytest.mark.parametrize("c", CODECS, ids=IDS)
@fuzz(250)
@given(data=st.binary(max_size=600))
def test_random_bodies_behind_a_valid_header(c: codec.Codec[Any], data: bytes) -> None:
    decode_or_invalid(c, struct.pack(">bI", 0, c.schemas.id_of(c.path)) + data)


@pytest.mark.parametrize("c", CODECS, ids=IDS)
@fuzz(250)
@given(data=st.data())
def test_well_formed_records_with_hostile_field_values(c: codec.Codec[Any], data: st.DataObject) -> None:
    message = decode_or_invalid(c, data.draw(wire_records(c)))
    if isinstance(message, Embedding):  # what the matcher relies on
        assert message.vector.ndim == 1 and np.isfinite(message.vector).all()
        assert abs(float(np.linalg.norm(message.vector.astype(np.float64))) - 1.0) <= 1e-3
    if isinstance(message, Face):  # what the embedder relies on
        assert len(message.aligned) == ALIGNED_BYTES


SEEDS = {
    "frames": codec.FRAMES.encode(
        Frame(FrameRef("cam-1", "cam-1@1", 1, "rtsp://cam"), 64, 48, b"\xff\xd8jpeg")
    ),
    "faces": codec.FACES.encode(
        Face(
            FrameRef("cam-1", "cam-1@1", 1, "rtsp://cam"),
            0,
            BBox(1, 2, 30, 40),
            ((1.0, 2.0),) * 5,
            Quality(0.9, 40, 100, 0.1),
            bytes(ALIGNED_BYTES),
            b"\xff\xd8thumb",
        )
    ),
    "embeddings": codec.EMBEDDINGS.encode(
        Embedding(
            FrameRef("cam-1", "cam-1@1", 1, "rtsp://cam"),
            0,
            BBox(1, 2, 30, 40),
            Quality(0.9, 40, 100, 0.1),
            "model",
            np.full(512, 512**-0.5, np.float32),
            b"",
        )
    ),
}


@pytest.mark.parametrize("subject", sorted(SEEDS))
@fuzz(300)
@given(data=st.data())
def test_mutations_of_a_valid_message(subject: str, data: st.DataObject) -> None:
    c = next(c for c in CODECS if c.subject == subject)
    decode_or_invalid(c, data.draw(mutated(SEEDS[subject])))
