"""JPEG in and out, stills in, with the checks that keep a hostile or broken image from hurting a stage."""

from __future__ import annotations

import mmap
import struct

import cv2
import numpy as np
import numpy.typing as npt

from facestream.errors import InvalidMessage

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


Buffer = bytes | mmap.mmap
"""Encoded image bytes: in memory, or a file mapped read-only (only the pages read are loaded)."""


def jpeg_dimensions(data: Buffer) -> tuple[int, int]:
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


def image_dimensions(data: Buffer) -> tuple[int, int]:
    """(width, height) from the header of a JPEG, PNG, BMP or WebP, without decoding any pixels.

    OpenCV cannot tell an image's size without decoding all of it, so a small file that
    claims gigapixels (a flat 30000x30000 PNG is 150 KB) would be allocated in full before
    any check. These four headers are fixed layouts, a few lines each, so they are read here
    rather than through another imaging library. The format is told by content, as OpenCV
    does, not by the file name.
    """
    if data[:2] == b"\xff\xd8":
        return jpeg_dimensions(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidMessage("bad_image", "PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
    elif data[:2] == b"BM":
        if len(data) < 26:
            raise InvalidMessage("bad_image", "truncated BMP header")
        (info_size,) = struct.unpack("<I", data[14:18])
        if info_size == 12:  # BITMAPCOREHEADER (OS/2 1.x): 16-bit sizes
            width, height = struct.unpack("<HH", data[18:22])
        else:  # BITMAPINFOHEADER and its successors: signed 32-bit; a negative height is top-down
            width, height = struct.unpack("<ii", data[18:26])
            height = abs(height)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        width, height = _webp_dimensions(data)
    else:
        raise InvalidMessage("not_image", "no JPEG, PNG, BMP or WebP header")
    if width <= 0 or height <= 0:
        raise InvalidMessage("bad_image", "header has a zero or negative dimension")
    return width, height


def _webp_dimensions(data: Buffer) -> tuple[int, int]:
    """The canvas size from the first chunk: lossy (VP8), lossless (VP8L) or extended (VP8X)."""
    kind, body = data[12:16], data[20:30]
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack("<I", body[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(body) >= 10:
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    raise InvalidMessage("bad_image", "WebP without a VP8, VP8L or VP8X header")


def decode_image(data: Buffer, *, max_pixels: int) -> npt.NDArray[np.uint8]:
    """Decode a still (JPEG, PNG, BMP, WebP) to BGR; one over `max_pixels` is refused undecoded.

    The header checked is the one of the very bytes decoded, so a file replaced in between
    cannot slip past the check.
    """
    width, height = image_dimensions(data)
    if width * height > max_pixels:
        raise InvalidMessage("too_large", f"{width}x{height} is over the limit of {max_pixels:,} pixels")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    # EXIF orientation may turn a JPEG by 90 degrees: the pixel count is what must agree
    if image is None or sorted(image.shape[:2]) != sorted((height, width)):
        raise InvalidMessage("bad_image", "does not decode (corrupt or truncated)")
    return np.asarray(image, dtype=np.uint8)


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())
