"""Which H.264 packets hold a frame no other frame refers to, so a sampler may leave them undecoded.

Why: with a GOP longer than the sampling interval the sampler decodes each GOP from its key frame up
to its last sample (camera/pyav.py), because the frames in between are references for the sample.
Not all of them are: B-frames without a pyramid, and the top temporal layer of cameras with SVC-T
(temporal scalability, offered by several makers so that a recorder can drop frames) are marked
non-reference in their NAL header (`nal_ref_idc` 0, H.264 7.4.1: "not used for reference"). Such a
frame that is not itself a sample can be dropped before the decoder without changing any other
picture. A stream of I- and P-frames has none, and gains nothing.

Only H.264 is read: in HEVC a "sub-layer non-reference" picture may still be referenced by a higher
temporal sub-layer, so nothing is dropped there. Packets come length-prefixed (MP4's avcC, the size
of the prefix in the codec's extradata) or in Annex B (start codes: MPEG-TS, RTSP as FFmpeg
depacketises it); anything not parsed as either is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

SLICE_TYPES = frozenset({1, 5})
"""Coded slice of a non-IDR picture (1) and of an IDR picture (5): the NAL units that make a frame.
(Types 2-4, data partitioning, are not in the profiles cameras use; a packet with them is kept.)"""
PARTITION_TYPES = frozenset({2, 3, 4})


def nal_headers_annex_b(data: bytes) -> Iterator[int]:
    """The first byte of each NAL unit of an Annex B packet (after each 00 00 01 start code)."""
    at = data.find(b"\x00\x00\x01")
    while at != -1 and at + 3 < len(data):
        yield data[at + 3]
        at = data.find(b"\x00\x00\x01", at + 3)


def nal_headers_length_prefixed(data: bytes, size: int) -> Iterator[int] | None:
    """The first byte of each NAL unit of a packet whose units are prefixed by their length in
    `size` bytes; None where the lengths do not add up to the packet (not such a packet)."""
    headers = []
    at = 0
    while at < len(data):
        if at + size >= len(data):
            return None
        length = int.from_bytes(data[at : at + size], "big")
        if length == 0 or at + size + length > len(data):
            return None
        headers.append(data[at + size])
        at += size + length
    return iter(headers)


def non_reference(headers: Iterator[int]) -> bool:
    """Whether these NAL units make a frame that no other frame refers to: at least one slice, and
    every slice with `nal_ref_idc` 0."""
    slices = 0
    for header in headers:
        kind = header & 0x1F
        if kind in PARTITION_TYPES:
            return False
        if kind in SLICE_TYPES:
            if header & 0x60:
                return False
            slices += 1
    return slices > 0


def droppable_for(codec_name: str, extradata: bytes | None) -> Callable[[bytes], bool] | None:
    """For an H.264 stream, a test of one packet's data: True when it holds only a non-reference
    frame. None for any other codec (nothing is dropped)."""
    if codec_name != "h264":
        return None
    if extradata and extradata[0] == 1 and len(extradata) > 4:  # avcC: lengthSizeMinusOne in byte 4
        size = (extradata[4] & 0x03) + 1

        def length_prefixed(data: bytes) -> bool:
            headers = nal_headers_length_prefixed(data, size)
            return headers is not None and non_reference(headers)

        return length_prefixed
    return lambda data: non_reference(nal_headers_annex_b(data))
