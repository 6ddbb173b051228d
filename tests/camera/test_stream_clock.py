"""Stream times for packets FFmpeg gives no timestamp (camera/stream_clock.py), on PyAV's packets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction

import av

from facestream.camera.stream_clock import MAX_UNTIMED_LEAD, stream_times

BASE = Fraction(1, 90_000)  # RTP's video clock
FRAME = 3600  # 25 fps in it


def packets(pts: list[int | None], duration: int | None = FRAME) -> list[av.Packet]:
    out = []
    for value in pts:
        packet = av.Packet(b"\x00")
        packet.pts = value
        if duration is not None:
            packet.duration = duration
        out.append(packet)
    return out


def times(given: list[av.Packet], frame_s: float = 0.04) -> list[float]:
    timed = list(stream_times(given, BASE, frame_s))
    assert [p for p, _ in timed] == given  # every packet, in order
    return [round(at_s, 6) for _, at_s in timed]


def test_timestamps_are_read_on_the_streams_clock() -> None:
    assert times(packets([90_000, 93_600, 97_200])) == [1.0, 1.04, 1.08]


def test_a_sessions_first_packets_without_timestamps_are_placed_before_the_first_that_has_one() -> None:
    """RTSP: FFmpeg gives a session's first packet (its first key frame) none."""
    assert times(packets([None, 0, 3600])) == [-0.04, 0.0, 0.04]
    assert times(packets([None, None, 90_000])) == [0.92, 0.96, 1.0]


def test_a_packet_without_a_timestamp_mid_stream_follows_the_one_before() -> None:
    assert times(packets([0, 3600, None, 10_800])) == [0.0, 0.04, 0.08, 0.12]


def test_without_durations_the_frame_rate_spaces_them() -> None:
    assert times(packets([None, 9000, None], duration=None), frame_s=0.1) == [0.0, 0.1, 0.2]


def test_a_stream_without_any_timestamps_gets_arrival_times() -> None:
    """Held no longer than MAX_UNTIMED_LEAD packets: a stream with no clock of its own must not
    be held back for good."""
    given = packets([None] * (MAX_UNTIMED_LEAD + 40))
    read = 0

    def demuxed() -> Iterator[av.Packet]:
        nonlocal read
        for packet in given:
            read += 1
            yield packet

    before = time.monotonic()
    stream = stream_times(demuxed(), BASE, 0.04)
    next(stream)
    assert read == MAX_UNTIMED_LEAD + 1  # the first packet comes out once the lead is full
    arrivals = [at for _, at in stream]
    assert len(arrivals) == len(given) - 1
    assert before <= arrivals[0] and arrivals == sorted(arrivals) and arrivals[-1] <= time.monotonic()
