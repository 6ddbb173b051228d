"""JPEG in and out, with the checks that keep a hostile or broken frame from hurting a stage."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import numpy.typing as npt

from facestream.errors import InvalidMessage

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, without decoding any pixels.

    Reading the header first lets a stage refuse a "decompression bomb" (a small file that
    claims gigapixels) before OpenCV allocates for it.
    """
    if len(data) < 4 or data[0:2] != b"\xff\xd8":
        raise InvalidMessage("not_jpeg", "missing JPEG start-of-image marker")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            if width == 0 or height == 0:
                raise InvalidMessage("bad_jpeg", "frame header has a zero dimension")
            return width, height
        if marker == 0xDA or length < 2:
            break
        i += 2 + length
    raise InvalidMessage("bad_jpeg", "no frame header found (truncated or corrupt JPEG)")


def decode_jpeg(data: bytes, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode to BGR; raise InvalidMessage with a reason for anything unusable."""
    width, height = jpeg_dimensions(data)
    if width * height > max_pixels:
        raise InvalidMessage("too_large", f"{width}x{height} exceeds {max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] != height or image.shape[1] != width:
        raise InvalidMessage("bad_jpeg", "JPEG does not decode (corrupt or truncated)")
    return np.asarray(image, dtype=np.uint8)


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())
