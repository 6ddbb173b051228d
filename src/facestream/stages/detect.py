"""frames → faces: check the capture time, decode, detect, align, apply the quality gates."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from facestream.errors import InvalidMessage
from facestream.imaging import decode_jpeg
from facestream.messages import Face, Frame
from facestream.runtime.metrics import DetectorMetrics
from facestream.stages.base import each
from facestream.stages.tracks import FaceTracks, Seen, appearance
from facestream.vision.faces import FaceFinder, thumbnail_jpeg

FUTURE_TIMESTAMP = "future_timestamp"
"""DLQ reason of a frame dated further ahead of the detector's clock than `max_future_skew_s`."""


class DetectStage:
    """The first stage to read a frame, so the one that refuses a capture time from the future,
    and the one that sees a camera's frames in order, so the one that tracks faces (`tracks`:
    a track's face is forwarded when it is new, clearly better, or due again; stages/tracks.py).

    A frame dated more than `max_future_skew_s` ahead of the clock (a clock far off, a forged
    record) is dead-lettered undecoded, not clamped: a made-up time would pass for the capture
    time, and the original stays in the DLQ. Past times are accepted (replayed files). 0 is no
    limit: the embedded mode stamps local files read faster than real time ahead of the clock.
    docs/delivery.md, "Capture times".

    It counts faces found, rejected and tracked into `metrics` (the service passes the exported
    group, runtime/metrics.py), or into a group of its own.
    """

    name = "detector"

    def __init__(
        self,
        finder: FaceFinder,
        *,
        max_frame_pixels: int,
        thumbnail_px: int,
        max_future_skew_s: float = 0.0,
        tracks: FaceTracks | None = None,
        clock: Callable[[], float] = time.time,
        metrics: DetectorMetrics | None = None,
    ) -> None:
        self._finder = finder
        self._metrics = metrics or DetectorMetrics.create()
        self._max_frame_pixels = max_frame_pixels
        self._thumbnail_px = thumbnail_px
        self._max_future_skew_ms = max_future_skew_s * 1000
        self._tracks = tracks
        self._clock = clock

    def process(self, items: Sequence[Frame]) -> list[list[Face] | InvalidMessage]:
        return each(items, self.faces_in)

    def faces_in(self, frame: Frame) -> list[Face]:
        self._check_time(frame)
        image = decode_jpeg(frame.jpeg, max_pixels=self._max_frame_pixels)
        passed = []
        for observation in self._finder.find(image):
            self._metrics.faces_detected.inc()
            if observation.rejection is not None:
                self._metrics.faces_rejected.labels(observation.rejection).inc()
                continue
            passed.append(observation)
        forwarded = [True] * len(passed)
        if self._tracks is not None:
            ref = frame.ref
            decisions = self._tracks.decide(
                ref.camera_id,
                ref.frame_id,
                ref.captured_at_ms,
                [Seen(o.bbox, o.quality, appearance(o.aligned)) for o in passed],
            )
            for decision in decisions:
                self._metrics.faces_tracked.labels(decision.value).inc()
            forwarded = [d.forwarded for d in decisions]
        # face_index counts every face that passed the gates, forwarded or not, so a face's id
        # does not depend on the tracker's state.
        return [
            Face(
                ref=frame.ref,
                face_index=index,
                bbox=observation.bbox,
                landmarks=tuple((float(x), float(y)) for x, y in observation.five),
                quality=observation.quality,
                aligned=observation.aligned.tobytes(),
                thumbnail_jpeg=thumbnail_jpeg(image, observation.bbox, side=self._thumbnail_px),
            )
            for index, observation in enumerate(passed)
            if forwarded[index]
        ]

    def _check_time(self, frame: Frame) -> None:
        if self._max_future_skew_ms <= 0:
            return
        ahead_ms = frame.ref.captured_at_ms - round(self._clock() * 1000)
        if ahead_ms > self._max_future_skew_ms:
            raise InvalidMessage(
                FUTURE_TIMESTAMP,
                f"captured_at_ms {frame.ref.captured_at_ms} is {ahead_ms / 1000:.0f} s ahead of the "
                f"detector's clock; at most {self._max_future_skew_ms / 1000:g} s is allowed "
                "(--max-future-skew-s)",
            )
