"""Real image files made cheaply, for the pixel-limit tests (sources and `identify`)."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int) -> bytes:
    """A valid white PNG of any size, as bytes, without ever holding its pixels.

    1-bit greyscale rows are deflated a thousand at a time, so a 30000x30000 image (2.7 GB
    once decoded to BGR, 112 MB of raw rows) costs ~150 KB and well under a second here.
    """
    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte "none", then 8 pixels a byte
    deflate = zlib.compressobj(9)
    body = [deflate.compress(row * min(1000, height - start)) for start in range(0, height, 1000)]
    body.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(body))
        + _chunk(b"IEND", b"")
    )


def webp_extended(simple: bytes, width: int, height: int) -> bytes:
    """A simple (VP8/VP8L) WebP rewrapped as an extended one: a VP8X canvas chunk first."""
    assert simple[:4] == b"RIFF" and simple[8:12] == b"WEBP"
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + simple[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment holding only the orientation tag (6: turned 90 degrees)."""
    assert jpeg[:2] == b"\xff\xd8"
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)  # big-endian TIFF, first IFD right after
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
