"""Reading a live stream in bursts: one wake-up per `batch_s`, not one per frame (issue 10).

Why: a live camera's reader that takes each packet as it arrives wakes 25+ times a second, and on
the 2-core build VM those wake-ups, not the parsing, are most of what being live costs: PyAV
demuxing a 720p 25 fps stream live cost 0.005-0.006 CPU s a second (over tcp:// MPEG-TS and RTSP
alike, and FFmpeg's own command line the same), eight times demuxing the same stream from a file.
Sleeping `batch_s` each time the reader has caught up with the stream lets the packets pile up in
the socket's buffer and read them in one go: 0.0012 (tcp) and 0.0024 (RTSP) in a one-off
alternated test at 0.25 s (docs/benchmarks.md has the sampler's figures).

What it costs: a sample reaches the sampler up to `batch_s` later (its capture time is when it
was handed over). Nothing is lost: TCP holds what arrives meanwhile (RTSP is read over TCP;
FFmpeg reads udp:// into a buffer of its own from a thread), and a reader whose reads find data
waiting goes on reading without a pause, so one that fell behind catches up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

DEFAULT_READ_BATCH_S = 0.2
"""The default for a live PyAV camera (SamplerSettings.live_read_batch_s)."""

CAUGHT_UP_S = 0.002
"""A read that took longer than this waited for the network: nothing was buffered."""

T = TypeVar("T")


def read_in_bursts(
    reads: Iterator[T], batch_s: float, stop: threading.Event, on_wait: Callable[[], None]
) -> Iterator[T]:
    """The items of `reads`; after one whose read waited (longer than CAUGHT_UP_S), the next read
    comes `batch_s` later, or not at all once `stop` is set. `on_wait` is called for each such
    read. The caller's work on an item (between yields) is not counted as reading."""
    while True:
        asked = time.monotonic()
        try:
            item = next(reads)
        except StopIteration:
            return
        waited = time.monotonic() - asked > CAUGHT_UP_S
        yield item
        if waited:
            on_wait()
            if batch_s > 0 and stop.wait(batch_s):
                return
