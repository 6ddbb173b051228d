"""Reading cameras: video files, still images, snapshot folders and live streams.

Every source does its own sampling, because what "the next frame" means differs:
- a video file is sampled by media time (every 1/fps seconds of video), as fast as it
  decodes unless paced in real time; skipped frames are grabbed but not retrieved;
- a live stream (rtsp://, http(s)://) is read continuously by a grab thread that keeps
  only the newest frame, so a slow consumer never works through a backlog of stale
  frames; the sampler takes that newest frame at each fps tick;
- a snapshot folder (a camera that drops JPEGs into a directory) yields its newest image;
- a still image yields itself once.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facestream.camera.spec import IMAGE_SUFFIXES, CameraSpec
from facestream.errors import CameraError

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Captured:
    image: Image
    captured_at_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


class FrameSource(ABC):
    """A camera opened for sampling at `fps`."""

    live: bool = False

    def __init__(self, spec: CameraSpec, fps: float) -> None:
        self.spec = spec
        self.fps = fps

    @abstractmethod
    def open(self) -> None:
        """Connect; raise CameraError if the camera cannot be opened."""

    @abstractmethod
    def read(self) -> Captured | None:
        """The next sampled frame; None once a finite source has ended.

        Raises CameraError when a live source fails or stalls, so the caller reconnects.
        """

    def close(self) -> None:
        return None


class StillImage(FrameSource):
    def open(self) -> None:
        path = Path(self.spec.url)
        self._image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if self._image is None:
            raise CameraError(f"{path}: not a readable image")
        self._at = int(path.stat().st_mtime * 1000)
        self._done = False

    def read(self) -> Captured | None:
        if self._done:
            return None
        self._done = True
        return Captured(np.asarray(self._image, np.uint8), self._at)


class VideoFile(FrameSource):
    """Sampled by media time; paced to real time only when `realtime` is set."""

    def __init__(self, spec: CameraSpec, fps: float, *, realtime: bool = False, loop: bool = False) -> None:
        super().__init__(spec, fps)
        self._realtime = realtime
        self._loop = loop
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        capture = cv2.VideoCapture(self.spec.url, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise CameraError(f"{self.spec.redacted_url}: cannot open video")
        self._capture = capture
        self._epoch_ms = self.spec.start_at_ms if self.spec.start_at_ms is not None else now_ms()
        self._opened_at = time.monotonic()
        self._next_sample_ms = 0.0
        self._native_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        self._index = 0

    def read(self) -> Captured | None:
        assert self._capture is not None, "open() first"
        interval = 1000.0 / self.fps
        while True:
            if not self._capture.grab():
                if self._loop and self._index > 0:
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    self._epoch_ms += int(self._index * 1000.0 / self._native_fps)
                    self._next_sample_ms = 0.0
                    self._index = 0
                    continue
                return None
            media_ms = self._index * 1000.0 / self._native_fps
            self._index += 1
            if media_ms + 1e-6 < self._next_sample_ms:
                continue  # grabbed, never retrieved: no colour conversion for skipped frames
            self._next_sample_ms = media_ms + interval
            ok, image = self._capture.retrieve()
            if not ok or image is None:
                raise CameraError(f"{self.spec.redacted_url}: frame {self._index} does not decode")
            if self._realtime:
                delay = self._opened_at + media_ms / 1000.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return Captured(np.asarray(image, np.uint8), self._epoch_ms + int(media_ms))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class LiveStream(FrameSource):
    """rtsp:// or http(s):// through FFmpeg, read by a grab thread that keeps the newest frame."""

    live = True

    def __init__(self, spec: CameraSpec, fps: float, *, stall_timeout_s: float = 10.0) -> None:
        super().__init__(spec, fps)
        self._stall_timeout_s = stall_timeout_s
        self._lock = threading.Lock()
        self._latest: Captured | None = None
        self._taken_at = -1
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        capture = cv2.VideoCapture(
            self.spec.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(self._stall_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(self._stall_timeout_s * 1000),
            ],
        )
        if not capture.isOpened():
            raise CameraError(f"{self.spec.redacted_url}: cannot connect")
        self._capture = capture
        self._stop.clear()
        self._error = None
        self._latest = None
        self._next_tick = time.monotonic()
        self._thread = threading.Thread(
            target=self._grab_loop, name=f"grab-{self.spec.camera_id}", daemon=True
        )
        self._thread.start()

    def _grab_loop(self) -> None:
        while not self._stop.is_set():
            ok, image = self._capture.read()
            if not ok or image is None:
                with self._lock:
                    self._error = "stream ended or read failed"
                return
            with self._lock:
                self._latest = Captured(np.asarray(image, np.uint8), now_ms())

    def read(self) -> Captured | None:
        self._next_tick += 1.0 / self.fps
        delay = self._next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next_tick = time.monotonic()  # fell behind: never try to catch up
        deadline = time.monotonic() + self._stall_timeout_s
        while True:
            with self._lock:
                latest, error = self._latest, self._error
            if latest is not None and latest.captured_at_ms != self._taken_at:
                self._taken_at = latest.captured_at_ms
                return latest
            if error is not None:
                raise CameraError(f"{self.spec.redacted_url}: {error}")
            if time.monotonic() > deadline:
                raise CameraError(f"{self.spec.redacted_url}: no new frame for {self._stall_timeout_s:.0f}s")
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._stall_timeout_s)
        capture = getattr(self, "_capture", None)
        if capture is not None:
            capture.release()


class SnapshotFolder(FrameSource):
    """A camera that writes JPEG snapshots into a folder: each tick yields the newest new one."""

    live = True

    def __init__(self, spec: CameraSpec, fps: float, *, stall_timeout_s: float = 10.0) -> None:
        super().__init__(spec, fps)
        self._stall_timeout_s = stall_timeout_s

    def open(self) -> None:
        self._dir = Path(self.spec.url)
        if not self._dir.is_dir():
            raise CameraError(f"{self._dir}: not a folder")
        self._last_mtime_ns = -1
        self._next_tick = time.monotonic()

    def read(self) -> Captured | None:
        deadline = time.monotonic() + self._stall_timeout_s
        while True:
            self._next_tick += 1.0 / self.fps
            time.sleep(max(0.0, self._next_tick - time.monotonic()))
            newest = max(
                (p for p in self._dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                key=lambda p: p.stat().st_mtime_ns,
                default=None,
            )
            if newest is not None and newest.stat().st_mtime_ns > self._last_mtime_ns:
                image = cv2.imread(str(newest), cv2.IMREAD_COLOR)
                if image is not None:
                    self._last_mtime_ns = newest.stat().st_mtime_ns
                    return Captured(np.asarray(image, np.uint8), self._last_mtime_ns // 1_000_000)
            if time.monotonic() > deadline:
                raise CameraError(f"{self._dir}: no new snapshot for {self._stall_timeout_s:.0f}s")


def open_source(
    spec: CameraSpec,
    *,
    default_fps: float,
    realtime_files: bool = False,
    loop_files: bool = False,
    stall_timeout_s: float = 10.0,
) -> FrameSource:
    """The source type is decided by the URL: scheme, then what the path is."""
    fps = spec.fps or default_fps
    url = spec.url
    if url.startswith(("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")):
        return LiveStream(spec, fps, stall_timeout_s=stall_timeout_s)
    path = Path(url)
    if path.is_dir():
        return SnapshotFolder(spec, fps, stall_timeout_s=stall_timeout_s)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return StillImage(spec, fps)
    return VideoFile(spec, fps, realtime=realtime_files, loop=loop_files)
