"""Still images: the size read from the header is the size decoded, and a still over the pixel
limit, or one that cannot be read, is refused before any pixel is allocated. Real files throughout."""

from __future__ import annotations

import resource
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facestream.camera.sources import MAX_FRAME_PIXELS, StillImage, open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError, InvalidMessage
from facestream.imaging import decode_image, image_dimensions
from tests.camera.stills import flat_png, jpeg_with_orientation, webp_extended
from tests.fuzz.strategies import fuzz, mutated

WIDTH, HEIGHT = 53, 37  # odd sizes: a swapped or off-by-one field shows
PICTURE = np.random.default_rng(7).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def encoded(ext: str, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, PICTURE, list(params))
    assert ok
    return bytes(data.tobytes())


def top_down_bmp() -> bytes:
    """A BMP whose negative height says its rows run top to bottom."""
    data = bytearray(encoded(".bmp"))
    data[22:26] = struct.pack("<i", -HEIGHT)
    return bytes(data)


FORMATS: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: encoded(".jpg"),
    "png": lambda: encoded(".png"),
    "bmp": lambda: encoded(".bmp"),
    "bmp top-down": top_down_bmp,
    "webp lossy (VP8)": lambda: encoded(".webp", cv2.IMWRITE_WEBP_QUALITY, 80),
    "webp lossless (VP8L)": lambda: encoded(".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp extended (VP8X)": lambda: webp_extended(
        encoded(".webp", cv2.IMWRITE_WEBP_QUALITY, 80), WIDTH, HEIGHT
    ),
}


def still(path: Path, *, max_pixels: int = MAX_FRAME_PIXELS) -> StillImage:
    source = open_source(CameraSpec(camera_id="still", url=str(path)), default_fps=2, max_pixels=max_pixels)
    assert isinstance(source, StillImage)
    return source


@pytest.mark.parametrize("kind", FORMATS)
def test_the_size_in_the_header_is_the_size_decoded(kind: str, tmp_path: Path) -> None:
    data = FORMATS[kind]()
    path = tmp_path / "photo.png"  # whatever it holds: the format is told by content, as OpenCV does
    path.write_bytes(data)
    assert image_dimensions(data) == (WIDTH, HEIGHT)
    source = still(path)
    source.open()
    captured = source.read()
    assert captured is not None and captured.image.shape == (HEIGHT, WIDTH, 3)
    assert source.read() is None


def test_an_exif_turned_jpeg_decodes_turned_and_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "turned.jpg"
    path.write_bytes(jpeg_with_orientation(encoded(".jpg"), 6))
    source = still(path)
    source.open()
    captured = source.read()
    assert image_dimensions(path.read_bytes()) == (WIDTH, HEIGHT)
    assert captured is not None and captured.image.shape == (WIDTH, HEIGHT, 3)  # as cv2.imread turns it
    read_by_opencv = cv2.imread(str(path))
    assert read_by_opencv is not None and captured.image.shape == read_by_opencv.shape


def test_the_limit_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "exact.png"
    path.write_bytes(encoded(".png"))
    still(path, max_pixels=WIDTH * HEIGHT).open()
    with pytest.raises(CameraError, match=rf"{WIDTH}x{HEIGHT} is over the limit of 1,960 pixels"):
        still(path, max_pixels=WIDTH * HEIGHT - 1).open()


def test_a_huge_still_is_refused_at_open_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(flat_png(30000, 30000))
    assert image_dimensions(path.read_bytes()) == (30000, 30000)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CameraError, match=r"huge.png: 30000x30000 is over the limit of 40,000,000 pixels"):
        still(path).open()
    with pytest.raises(InvalidMessage, match="too_large"):
        decode_image(path.read_bytes(), max_pixels=MAX_FRAME_PIXELS)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 512 * 1024  # decoding would have taken 2.7 GB


def test_a_still_swapped_for_a_huge_one_after_open_is_refused_at_read(tmp_path: Path) -> None:
    """read() checks the header of the very bytes it decodes, not what open() saw."""
    path = tmp_path / "swapped.png"
    path.write_bytes(encoded(".png"))
    source = still(path)
    source.open()
    path.write_bytes(flat_png(30000, 30000))
    with pytest.raises(CameraError, match="30000x30000 is over the limit"):
        source.read()


def truncated_jpeg() -> bytes:
    data = encoded(".jpg")
    return data[: data.index(b"\xff\xc0")]  # cut before the frame header


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "no JPEG, PNG, BMP or WebP header"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG without its IHDR header"),
        (b"BM\x00\x00", "truncated BMP header"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00", "WebP without a VP8, VP8L or VP8X header"),
        (truncated_jpeg(), "no frame header found"),
    ],
    ids=["empty", "text", "png header cut", "bmp header cut", "webp header cut", "jpeg header cut"],
)
def test_an_unreadable_still_is_refused_at_open_with_the_reason(
    content: bytes, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(CameraError, match=rf"bad\.jpg: not a readable image: .*{says}"):
        still(path).open()


def test_a_good_header_on_a_corrupt_body_fails_at_read(tmp_path: Path) -> None:
    data = encoded(".png")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    source = still(path)
    source.open()  # the header is whole
    with pytest.raises(CameraError, match=r"cut\.png: does not decode"):
        source.read()


# -- any bytes: a reason or the header's size, never more pixels than allowed ----------------------

FUZZ_MAX_PIXELS = 10_000
MAGIC = [
    b"\xff\xd8",
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
]


def check(data: bytes) -> None:
    """The contract of image_dimensions and decode_image, for any bytes."""
    try:
        width, height = image_dimensions(data)
    except InvalidMessage as exc:
        assert exc.reason in {"not_image", "bad_image", "not_jpeg", "bad_jpeg"}, exc
        with pytest.raises(InvalidMessage):
            decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
        return
    assert width >= 1 and height >= 1
    try:
        image = decode_image(data, max_pixels=FUZZ_MAX_PIXELS)
    except InvalidMessage as exc:
        assert exc.reason in {"too_large", "bad_image"}, exc
        if width * height > FUZZ_MAX_PIXELS:
            assert exc.reason == "too_large"  # refused from the header, before any pixel is decoded
        return
    assert width * height <= FUZZ_MAX_PIXELS
    assert image.dtype.name == "uint8" and image.shape in {(height, width, 3), (width, height, 3)}


@fuzz(400)
@given(data=st.data())
def test_mutations_of_real_stills(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(sorted(FORMATS)))
    check(data.draw(mutated(FORMATS[kind]())))


@fuzz(300)
@given(magic=st.sampled_from(MAGIC), tail=st.binary(max_size=64))
def test_random_bytes_behind_each_format_signature(magic: bytes, tail: bytes) -> None:
    check(magic + tail)
