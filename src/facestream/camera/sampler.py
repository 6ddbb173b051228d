"""Sampling cameras into frames: encoding, per-camera health, and one worker thread per camera.

One thread per camera keeps a stalled or reconnecting camera from delaying any other:
OpenCV releases the GIL while it decodes and encodes, and PyAV while it decodes (measured: two
decoding threads use two cores), so the threads run in parallel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from facestream.camera.sources import Captured, FrameSource
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError, FacestreamError
from facestream.imaging import encode_jpeg
from facestream.messages import Frame, FrameRef
from facestream.runtime import metrics

log = logging.getLogger(__name__)

Publish = Callable[[Frame], bool | None]
"""Queue a frame for publishing; False when it was dropped instead (refused for good)."""


@dataclass(frozen=True, slots=True)
class FrameEncoder:
    """Downscale wide frames, JPEG-encode, and stamp the frame's reference."""

    jpeg_quality: int = 85
    max_width: int = 1920

    def frame(self, spec: CameraSpec, captured: Captured) -> Frame:
        image = captured.image
        if image.shape[1] > self.max_width:
            scale = self.max_width / image.shape[1]
            size = (self.max_width, max(1, round(image.shape[0] * scale)))
            image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        ref = FrameRef(
            camera_id=spec.camera_id,
            frame_id=f"{spec.camera_id}@{captured.captured_at_ms}",
            captured_at_ms=captured.captured_at_ms,
            source=spec.redacted_url,
        )
        return Frame(ref, int(image.shape[1]), int(image.shape[0]), encode_jpeg(image, self.jpeg_quality))


class CameraMonitor:
    """Per-camera health: achieved fps, last frame age, frozen and black picture detection.

    Frozen = the last `window` frames are (almost) pixel-identical; black = their mean
    brightness is near zero. Both are common failures of city cameras that still "stream".
    """

    def __init__(self, camera_id: str, window: int = 10) -> None:
        self.camera_id = camera_id
        self._times: deque[float] = deque(maxlen=30)
        self._diffs: deque[float] = deque(maxlen=window)
        self._brightness: deque[float] = deque(maxlen=window)
        self._previous: np.ndarray | None = None
        self.last_frame_at: float | None = None

    def observe(self, image: np.ndarray) -> None:
        now = time.monotonic()
        self.last_frame_at = now
        self._times.append(now)
        small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (32, 18), interpolation=cv2.INTER_AREA)
        small = small.astype(np.float32)
        if self._previous is not None:
            self._diffs.append(float(np.abs(small - self._previous).mean()))
        self._previous = small
        self._brightness.append(float(small.mean()))
        labels = self.camera_id
        metrics.CAMERA_UP.labels(labels).set(1)
        metrics.CAMERA_FPS.labels(labels).set(self.fps)
        metrics.CAMERA_FROZEN.labels(labels).set(1 if self.frozen else 0)
        metrics.CAMERA_BLACK.labels(labels).set(1 if self.black else 0)

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    @property
    def frozen(self) -> bool:
        return len(self._diffs) == self._diffs.maxlen and max(self._diffs) < 0.5

    @property
    def black(self) -> bool:
        return len(self._brightness) == self._brightness.maxlen and max(self._brightness) < 8.0

    def refresh_age(self) -> None:
        if self.last_frame_at is not None:
            metrics.CAMERA_LAST_FRAME_AGE.labels(self.camera_id).set(time.monotonic() - self.last_frame_at)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 1.0
    max_s: float = 60.0

    def delays(self) -> Callable[[], float]:
        state = {"next": self.initial_s}

        def next_delay() -> float:
            delay = state["next"]
            state["next"] = min(delay * 2, self.max_s)
            return delay

        return next_delay


class CameraWorker:
    """Opens, samples and publishes one camera until stopped; reconnects with backoff.

    Reconnect delays double from `Backoff.initial_s` up to `max_s`, and start over once a
    reopened camera has delivered a frame. Once stopped, a worker touches no metric again,
    so the fleet can remove the camera's series without a late write bringing them back.

    `last_captured_at_ms` is the capture time of the last frame it handed to `publish`: a source
    reopened after a failure, or a worker started again for the same camera (`resume_after_ms`),
    goes on after it where the source can (files: camera/sources.py `FrameSource.resume_after`)
    instead of publishing the file again from its start. A worker that knows nothing yet asks
    `resume_lookup` (where a former sampler of this camera stopped) before it first opens a source
    that can resume; a lookup that fails is retried like a failed open.
    """

    def __init__(
        self,
        spec: CameraSpec,
        source: FrameSource,
        encoder: FrameEncoder,
        publish: Publish,
        backoff: Backoff,
        *,
        resume_after_ms: int | None = None,
        resume_lookup: Callable[[], int | None] | None = None,
    ) -> None:
        self.spec = spec
        self.monitor = CameraMonitor(spec.camera_id)
        self._source = source
        self._encoder = encoder
        self._publish = publish
        self._backoff = backoff
        self._stop = threading.Event()
        self._delivered = False
        self.last_captured_at_ms = resume_after_ms
        self._resume_lookup = resume_lookup if resume_after_ms is None else None
        self.finished = threading.Event()
        self._decoded_counted = self._dropped_counted = 0
        self._thread = threading.Thread(target=self.run, name=f"camera-{spec.camera_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._source.cancel()
        self._thread.join(timeout_s)

    def run(self) -> None:
        camera = self.spec.camera_id
        # counters exist from the start at 0, so rate() and increase() see the first event
        metrics.CAMERA_RECONNECTS.labels(camera)
        metrics.FRAMES_PUBLISHED.labels(camera)
        next_delay = self._backoff.delays()
        attempts = 0
        try:
            while not self._stop.is_set():
                if attempts:
                    metrics.CAMERA_RECONNECTS.labels(camera).inc()
                attempts += 1
                self._delivered = False
                try:
                    self._look_up_where_it_was()
                    if self.last_captured_at_ms is not None:
                        self._source.resume_after(self.last_captured_at_ms)
                    self._source.open()
                    if self._pump():
                        return  # a finite source ended
                except Exception as exc:  # a failed publish must not end the camera's thread either
                    if self._stop.is_set():
                        return
                    metrics.CAMERA_UP.labels(camera).set(0)
                    if self._delivered:
                        next_delay = self._backoff.delays()
                    delay = next_delay()
                    if isinstance(exc, CameraError):
                        log.warning(
                            "camera %s: %s; reconnecting in %.3gs",
                            camera,
                            exc,
                            delay,
                            extra={"camera": camera},
                        )
                    else:
                        log.exception(
                            "camera %s failed; reconnecting in %.3gs", camera, delay, extra={"camera": camera}
                        )
                    self._stop.wait(delay)
                finally:
                    self._source.close()
        finally:
            self.finished.set()

    def _look_up_where_it_was(self) -> None:
        lookup = self._resume_lookup
        if lookup is None or not self._source.resumable:
            return
        try:
            found = lookup()
        except FacestreamError as exc:
            raise CameraError(f"where it stopped before is unknown ({exc}): not started yet") from None
        self._resume_lookup = None
        if found is not None and self.last_captured_at_ms is None:
            self.last_captured_at_ms = found
            log.info(
                "camera %s goes on after its frame of %d, published before",
                self.spec.camera_id,
                found,
                extra={"camera": self.spec.camera_id},
            )

    def _pump(self) -> bool:
        """Publish frames until stopped (False) or the source ends (True)."""
        while not self._stop.is_set():
            captured = self._source.read()
            if self._stop.is_set():
                return False
            if captured is None:
                metrics.CAMERA_UP.labels(self.spec.camera_id).set(0)
                return True
            self.monitor.observe(captured.image)
            self._report_decoding()
            frame = self._encoder.frame(self.spec, captured)
            published = self._publish(frame) is not False
            self.last_captured_at_ms = captured.captured_at_ms  # handled, published or dropped
            self._delivered = True
            if published:
                metrics.FRAMES_PUBLISHED.labels(self.spec.camera_id).inc()
                metrics.FRAME_BYTES.observe(len(frame.jpeg))
        return False

    def _report_decoding(self) -> None:
        """The source's decode work and GOP, where it counts them (PyAV files), as metrics."""
        stats = self._source.decode_stats
        if stats is None:
            return
        camera = self.spec.camera_id
        metrics.CAMERA_FRAMES_DECODED.labels(camera).inc(max(0, stats.decoded - self._decoded_counted))
        metrics.CAMERA_FRAMES_DROPPED.labels(camera).inc(max(0, stats.dropped - self._dropped_counted))
        self._decoded_counted, self._dropped_counted = stats.decoded, stats.dropped
        if stats.gop_s is not None:
            metrics.CAMERA_GOP_SECONDS.labels(camera).set(stats.gop_s)
            metrics.CAMERA_GOP_OVER_INTERVAL.labels(camera).set(1 if stats.gop_over_interval else 0)
