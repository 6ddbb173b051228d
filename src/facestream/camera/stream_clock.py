"""Stream times for a live stream's packets, those FFmpeg gives no timestamp included.

Why: the live schedule (camera/live_schedule.py) runs on the stream's clock. Over RTSP, FFmpeg
gives the first packet of a session no timestamp, and a camera starts a session at a key frame,
so that packet is the stream's first key frame (seen with the tests' H.264 RTSP camera; the rest
come one frame behind their RTP timestamps, a constant offset). The grab loop used to put the
arrival time on the monotonic clock in its place, a number from another clock: the next key
frame looked like the clock going back and restarted the schedule, and with a 2 s GOP the first
GOP's 1 s sample was never taken. A packet without a timestamp mid-stream did the same.

Now a packet without a timestamp is placed one frame after the packet before it (by its duration,
else the frame rate); those at the start wait for the first packet that has one and are placed
before it. A stream that gives none for `MAX_UNTIMED_LEAD` packets has no clock of its own: it
gets arrival times, as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Protocol, TypeVar

MAX_UNTIMED_LEAD = 16
"""Packets without a timestamp held at a stream's start, waiting for one that has it."""


class Timed(Protocol):
    """What of a packet (PyAV's `av.Packet`) gives its time, in the stream's time base."""

    @property
    def pts(self) -> int | None: ...

    @property
    def duration(self) -> int | None: ...


P = TypeVar("P", bound=Timed)


def stream_times(
    packets: Iterable[P], time_base: Fraction | None, frame_s: float
) -> Iterator[tuple[P, float]]:
    """Each packet, in order, with its time in seconds on the stream's clock (see the module
    docstring)."""
    base = float(time_base) if time_base else 0.0

    def duration_s(packet: P) -> float:
        return float(packet.duration * base) if packet.duration and base else frame_s

    untimed: list[P] = []  # the stream's first packets, while none has had a timestamp
    previous: tuple[P, float] | None = None
    clockless = False
    for packet in packets:
        if packet.pts is not None and base:
            at_s = float(packet.pts * base)
        elif previous is not None:
            at_s = previous[1] + duration_s(previous[0])
        elif clockless or len(untimed) >= MAX_UNTIMED_LEAD:
            clockless = True  # no clock of its own: arrival times
            yield from ((held, time.monotonic()) for held in [*untimed, packet])
            untimed = []
            continue
        else:
            untimed.append(packet)
            continue
        lead_s = sum(duration_s(held) for held in untimed)
        for held in untimed:  # placed back from the first timed packet, one duration apart
            yield held, at_s - lead_s
            lead_s -= duration_s(held)
        untimed = []
        previous = (packet, at_s)
        yield packet, at_s
    yield from ((held, time.monotonic()) for held in untimed)
