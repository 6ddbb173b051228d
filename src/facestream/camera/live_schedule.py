"""Which frames of a live stream the sampler decodes: a sampling grid that prefers key frames.

A live H.264 stream cannot seek, and a frame between key frames decodes only after every frame
since its key frame. So the grab thread keeps each GOP's packets undecoded and decodes up to a
frame only when that frame is a sample; the rest of the GOP after its last sample is never
decoded (issue 10). The grid runs on the stream's own clock (packet timestamps) at the sampling
interval, and a key frame stands in for a grid point when it is the nearest cheap frame:

- a key frame is taken when it is at or past the next grid point, or before it by less than
  half the GOP (GOP <= interval: the nearest key frame; that keeps key-frames-only decoding) or
  half the interval (a longer GOP: better than decoding a chain a moment later);
- once the GOP is known to fit the interval, key frames alone are samples (the reader need not
  even keep the other frames: a late key frame leaves a longer gap rather than costing a GOP);
- otherwise any other frame is taken at or past its grid point, unless the next key frame is
  due within half an interval after the grid point (then the key frame is awaited, up to that
  half interval, and taken instead);
- the grid keeps its phase (one sample per interval on average); after a stall longer than an
  interval it restarts at the frame taken, and when the clock goes back at a key frame it
  restarts there.

With a GOP of 2 s sampled at 1 fps that decodes the key frame and the 25 frames up to the 1 s
sample, about half of the stream, instead of all of it; with a GOP no longer than the interval
it decodes key frames only. Pure logic, so the rule is tested without video.
"""

from __future__ import annotations

from dataclasses import dataclass

EPSILON_S = 1e-3
"""Timestamps are rounded (90 kHz, milliseconds): closer than this counts as equal."""


def gop_over(gop_s: float, interval_s: float) -> bool:
    """Whether a GOP is longer than the sampling interval, so that key frames alone would sample
    too rarely (the one rule files and live streams both apply)."""
    return gop_s > interval_s + EPSILON_S


@dataclass(slots=True)
class LiveSchedule:
    """Decides, frame by frame in stream order, which frames are samples."""

    interval_s: float
    """The sampling interval (1 / the camera's fps)."""
    due_s: float | None = None
    """Stream time of the next grid point; None until the first key frame."""
    last_key_s: float | None = None
    gop_s: float | None = None
    """Seconds between the last two key frames; None until two were seen."""

    def key_frame(self, at_s: float) -> bool:
        """A key frame at stream time `at_s`: records the GOP; whether it is a sample."""
        if self.last_key_s is not None and at_s > self.last_key_s + EPSILON_S:
            self.gop_s = at_s - self.last_key_s
        elif self.last_key_s is not None and at_s + EPSILON_S < self.last_key_s:
            self.due_s = None  # the stream's clock went back (a wrap, a restarted encoder): start again
        self.last_key_s = at_s
        if self.due_s is None:
            return self._taken(at_s)
        early_by = min(self.gop_s, self.interval_s) / 2 if self.gop_s is not None else 0.0
        return at_s + early_by + EPSILON_S >= self.due_s and self._taken(at_s)

    def frame(self, at_s: float) -> bool:
        """Any other frame at stream time `at_s`: whether it is a sample (decoded from its key frame)."""
        if self.keys_suffice or self.due_s is None or at_s + EPSILON_S < self.due_s:
            return False
        if self._key_awaited(at_s):
            return False
        return self._taken(at_s)

    @property
    def gop_over_interval(self) -> bool:
        return self.gop_s is not None and gop_over(self.gop_s, self.interval_s)

    @property
    def keys_suffice(self) -> bool:
        """The GOP is known and fits the interval: no frame but a key frame is a sample."""
        return self.gop_s is not None and not self.gop_over_interval

    def _key_awaited(self, at_s: float) -> bool:
        """Whether the next key frame, expected one GOP after the last, comes within half an
        interval after the grid point, and has not yet been waited for that long."""
        if self.gop_s is None or self.last_key_s is None or self.due_s is None:
            return False
        expected_s = self.last_key_s + self.gop_s
        half = self.interval_s / 2
        return expected_s <= self.due_s + half + EPSILON_S and at_s + EPSILON_S < self.due_s + half

    def _taken(self, at_s: float) -> bool:
        """Advance the grid past a sample at `at_s`."""
        if self.due_s is None or at_s >= self.due_s + self.interval_s - EPSILON_S:
            self.due_s = at_s + self.interval_s  # the start, or after a stall: the grid restarts here
        else:
            self.due_s += self.interval_s  # early key frame or a late frame: the grid keeps its phase
        return True
