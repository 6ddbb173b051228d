"""Property tests: random valid messages round-trip; no byte string makes decode raise anything
but InvalidMessage (a consumer must be able to dead-letter whatever lands on its topic)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facestream import codec
from facestream.camera.spec import CAMERA_ID, ZONE, CameraSpec
from facestream.errors import InvalidMessage
from facestream.messages import (
    ALIGNED_BYTES,
    BBox,
    Candidate,
    Embedding,
    EpisodeEnd,
    Face,
    Frame,
    FrameRef,
    Hit,
    Quality,
)

CODECS: list[codec.Codec[Any]] = [
    codec.CAMERAS,
    codec.FRAMES,
    codec.FACES,
    codec.EMBEDDINGS,
    codec.HITS,
    codec.MATCHES,
    codec.EPISODES,
]
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MIN_MS = -62_135_596_800_000  # 0001-01-01, the first instant a timestamp-millis reader can give back
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # Avro strings are UTF-8
int32 = st.integers(-(2**31), 2**31 - 1)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
refs = st.builds(FrameRef, text, text, st.integers(MIN_MS, MAX_MS), text)
boxes = st.builds(BBox, f32, f32, f32, f32)
qualities = st.builds(Quality, f32, f32, f32, f32)
blobs = st.binary(max_size=300)
zones = st.none() | st.from_regex(ZONE, fullmatch=True)


@st.composite
def unit_vectors(draw: st.DrawFn) -> np.ndarray:
    values = draw(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=64))
    vector = np.asarray(values, np.float32)
    if not np.linalg.norm(vector) > 1e-3:
        vector[0] = 1.0
    return (vector / np.linalg.norm(vector)).astype(np.float32)


aligned = st.integers(0, 2**32 - 1).map(
    lambda seed: np.random.default_rng(seed).integers(0, 256, ALIGNED_BYTES, dtype=np.uint8).tobytes()
)
landmarks = st.lists(st.tuples(f32, f32), max_size=5).map(tuple)

MESSAGES: dict[str, st.SearchStrategy[Any]] = {
    "cameras": st.builds(
        CameraSpec,
        camera_id=st.from_regex(CAMERA_ID, fullmatch=True),
        url=text.filter(bool),
        fps=st.none() | st.floats(0.001, 30),
        zone=st.from_regex(ZONE, fullmatch=True),
        enabled=st.booleans(),
        start_at_ms=st.none() | st.integers(0, MAX_MS),
    ),
    "frames": st.builds(Frame, refs, int32, int32, blobs),
    "faces": st.builds(Face, refs, int32, boxes, landmarks, qualities, aligned, blobs),
    "embeddings": st.builds(Embedding, refs, int32, boxes, qualities, text, unit_vectors(), blobs),
    "hits": st.builds(Hit, refs, int32, boxes, f32, text, text, text, text, blobs, zones),
    "matches": st.builds(
        Candidate,
        refs,
        int32,
        boxes,
        f32,
        text,
        text,
        text,
        text,
        blobs,
        zones,
        candidate_id=text,
        episode_id=text,
    ),
    "episodes": st.builds(
        EpisodeEnd,
        text,
        text,
        text,
        text,
        zones,
        text,
        st.integers(MIN_MS, MAX_MS),
        st.integers(MIN_MS, MAX_MS),
        st.integers(1, 2**31 - 1),
        f32,
        st.integers(MIN_MS, MAX_MS),
    ),
}


def _codec_and_message(subject: str) -> st.SearchStrategy[tuple[codec.Codec[Any], Any]]:
    c = next(c for c in CODECS if c.subject == subject)
    return MESSAGES[subject].map(lambda m: (c, m))


any_message = st.one_of(*(_codec_and_message(s) for s in MESSAGES))


@PROPERTY
@given(any_message)
def test_random_valid_messages_round_trip(pair: tuple[codec.Codec[Any], Any]) -> None:
    c, message = pair
    data = c.encode(message)
    back = c.decode(data)
    # 32-bit floats are exact here, so the decoded message equals the one sent
    assert back == message
    if isinstance(message, Embedding):
        assert np.array_equal(back.vector, message.vector)
    assert c.encode(back) == data


def _decode_or_invalid(c: codec.Codec[Any], data: bytes) -> None:
    try:
        c.decode(data)
    except InvalidMessage as exc:
        assert exc.reason and str(exc)


@PROPERTY
@given(st.sampled_from(CODECS), st.binary(max_size=400))
def test_random_bytes_only_raise_invalid_message(c: codec.Codec[Any], data: bytes) -> None:
    _decode_or_invalid(c, data)


@PROPERTY
@given(st.sampled_from(CODECS), st.binary(max_size=400))
def test_garbage_behind_a_valid_header_only_raises_invalid_message(c: codec.Codec[Any], body: bytes) -> None:
    _decode_or_invalid(c, struct.pack(">bI", 0, c.schemas.id_of(c.path)) + body)


@PROPERTY
@given(any_message, st.data())
def test_truncated_messages_are_always_invalid(
    pair: tuple[codec.Codec[Any], Any], data: st.DataObject
) -> None:
    c, message = pair
    encoded = c.encode(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    try:
        c.decode(encoded[:cut])
    except InvalidMessage:
        return
    raise AssertionError(f"a message cut to {cut} of {len(encoded)} bytes decoded")


@PROPERTY
@given(any_message, st.data())
def test_corrupted_messages_decode_or_raise_invalid_message(
    pair: tuple[codec.Codec[Any], Any], data: st.DataObject
) -> None:
    c, message = pair
    encoded = bytearray(c.encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    _decode_or_invalid(c, bytes(encoded))


def test_a_message_of_another_subject_is_refused_by_schema_id() -> None:
    frame = Frame(FrameRef("c", "c@1", 1, "s"), 1, 1, b"\xff\xd8")
    data = codec.FRAMES.encode(frame)
    for c in CODECS:
        if c is not codec.FRAMES:
            try:
                c.decode(data)
            except InvalidMessage as exc:
                assert exc.reason == "unknown_schema"
            else:
                raise AssertionError(f"{c.subject} decoded a frame")
