"""Fuzzing the JPEG checks every frame goes through (detector, live cameras): `jpeg_dimensions`
and `decode_jpeg` raise nothing but InvalidMessage, never allocate for a frame over the pixel
limit, and whatever they accept is an image of exactly the size its header claimed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facestream.errors import InvalidMessage
from facestream.imaging import decode_jpeg, jpeg_dimensions
from tests.fuzz.strategies import fuzz, mutated, sample_jpegs, sof_header

MAX_PIXELS = 100_000
REASONS = {"not_jpeg", "bad_jpeg", "too_large"}


def check(data: bytes) -> None:
    """The contract of the two functions, for any bytes."""
    try:
        width, height = jpeg_dimensions(data)
    except InvalidMessage as exc:
        assert exc.reason in {"not_jpeg", "bad_jpeg"}, exc
        with pytest.raises(InvalidMessage):
            decode_jpeg(data, max_pixels=MAX_PIXELS)
        return
    assert 1 <= width <= 65535 and 1 <= height <= 65535
    try:
        image = decode_jpeg(data, max_pixels=MAX_PIXELS)
    except InvalidMessage as exc:
        assert exc.reason in REASONS, exc
        if width * height > MAX_PIXELS:
            assert exc.reason == "too_large"  # refused from the header, before any pixel is decoded
        return
    assert width * height <= MAX_PIXELS
    assert image.shape == (height, width, 3) and image.dtype.name == "uint8"


@fuzz(600)
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    check(data)


@fuzz(600)
@given(st.binary(max_size=300).map(lambda tail: b"\xff\xd8" + tail))
def test_random_bytes_after_a_start_of_image_marker(data: bytes) -> None:
    check(data)


@fuzz(800)
@given(data=st.data())
def test_mutations_of_real_jpegs(faces_dir: Path, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(sample_jpegs(faces_dir)))
    check(data.draw(mutated(original)))


@fuzz(400)
@given(
    width=st.integers(0, 65535),
    height=st.integers(0, 65535),
    marker=st.sampled_from([0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCB]),
    components=st.integers(0, 5),
    rest=st.binary(max_size=64),
)
def test_frame_headers_claiming_any_size(
    width: int, height: int, marker: int, components: int, rest: bytes
) -> None:
    data = sof_header(width, height, marker, components) + rest
    check(data)
    if width and height and width * height > MAX_PIXELS:
        with pytest.raises(InvalidMessage, match="too_large"):
            decode_jpeg(data, max_pixels=MAX_PIXELS)


@fuzz(300)
@given(data=st.data())
def test_a_real_scan_behind_a_forged_header(faces_dir: Path, data: st.DataObject) -> None:
    """The header says one size, the pixels another: never accepted as the header's size unless decoded so."""
    original = data.draw(st.sampled_from(sample_jpegs(faces_dir)))
    width, height = data.draw(st.integers(1, 400)), data.draw(st.integers(1, 400))
    check(sof_header(width, height) + original[2:])
