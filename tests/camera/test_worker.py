"""CameraWorker and CameraMonitor: reconnects with backoff, health flags, prompt stop."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from facestream.camera.sampler import Backoff, CameraMonitor, CameraWorker, FrameEncoder
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.messages import Frame
from facestream.runtime import metrics
from tests.fixtures.mjpeg import MjpegCamera, metric, wait_for

Start = Callable[..., MjpegCamera]


class Frames:
    """A thread-safe publish callback that keeps what it got."""

    def __init__(self, fail_first: int = 0) -> None:
        self.frames: list[Frame] = []
        self._fail = fail_first
        self._lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                raise BufferError("producer queue full")
            self.frames.append(frame)

    def __len__(self) -> int:
        with self._lock:
            return len(self.frames)


def worker(
    camera_id: str, url: str, publish: Frames, *, fps: float = 10, backoff: Backoff | None = None
) -> CameraWorker:
    spec = CameraSpec(camera_id=camera_id, url=url, fps=fps)
    return CameraWorker(
        spec,
        open_source(spec, default_fps=fps, stall_timeout_s=1.0),
        FrameEncoder(jpeg_quality=70),
        publish,
        backoff or Backoff(0.1, 0.4),
    )


def test_backoff_doubles_up_to_its_maximum() -> None:
    next_delay = Backoff(0.1, 0.5).delays()
    assert [next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_a_dropped_stream_reconnects_and_the_metrics_show_it(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20, mode="drop", fail_after=6)
    frames = Frames()
    w = worker("w-drop", camera.url, frames)
    states: list[float] = []

    def watch() -> bool:
        up = metric("facestream_camera_up", "w-drop")
        if up is not None and (not states or states[-1] != up):
            states.append(up)
        return states[-3:] == [1.0, 0.0, 1.0] and camera.connections >= 2

    w.start()
    try:
        wait_for(watch, what="camera_up to go 1, 0, 1")
        reconnects = metric("facestream_camera_reconnects_total", "w-drop")
        assert reconnects is not None and reconnects >= 1
        published = metric("facestream_frames_published_total", "w-drop")
        assert published is not None and published == len(frames) >= 2
    finally:
        w.stop()
    assert {f.ref.camera_id for f in frames.frames} == {"w-drop"}


def test_a_refusing_camera_is_retried_with_exponential_backoff(
    mjpeg_camera: Start, caplog: pytest.LogCaptureFixture
) -> None:
    camera = mjpeg_camera(mode="refuse")
    w = worker("w-refuse", camera.url, Frames(), backoff=Backoff(0.05, 0.4))
    with caplog.at_level(logging.WARNING, logger="facestream.camera.sampler"):
        w.start()
        try:
            wait_for(lambda: len(camera.requests) >= 6, what="six attempts")
        finally:
            w.stop()
    delays = [float(m) for m in re.findall(r"HTTP 503 .*; reconnecting in ([\d.]+)s", caplog.text)]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]
    gaps = np.diff(camera.requests[:5])
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, delays, strict=False))
    assert metric("facestream_camera_up", "w-refuse") == 0.0
    reconnects = metric("facestream_camera_reconnects_total", "w-refuse")
    assert reconnects is not None and reconnects >= 5


def test_a_failing_publish_reconnects_instead_of_ending_the_camera(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20)
    frames = Frames(fail_first=2)
    w = worker("w-publish", camera.url, frames)
    w.start()
    try:
        wait_for(lambda: len(frames) >= 3, what="frames after the failed publishes")
        assert not w.finished.is_set()
        assert camera.connections == 3  # each failure reopened the camera
    finally:
        w.stop()


def test_stop_is_prompt_and_leaves_no_metric_behind(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20, mode="stall", fail_after=2)
    spec = CameraSpec(camera_id="w-stop", url=camera.url, fps=10)
    source = open_source(spec, default_fps=10, stall_timeout_s=30)  # a read would wait 30 s
    w = CameraWorker(spec, source, FrameEncoder(), Frames(), Backoff(0.1, 0.4))
    w.start()
    try:
        wait_for(lambda: metric("facestream_frames_published_total", "w-stop") is not None, what="a frame")
        time.sleep(0.3)  # now blocked waiting for a frame that never comes
    finally:
        began = time.monotonic()
        w.stop()
    assert w.finished.is_set() and time.monotonic() - began < 2
    metrics.forget_camera("w-stop")  # what the fleet does next
    time.sleep(0.3)
    assert metric("facestream_camera_up", "w-stop") is None  # the stopped worker wrote nothing since


@pytest.mark.parametrize(
    ("picture", "frozen", "black"), [("frozen", 1.0, 0.0), ("black", 1.0, 1.0), ("counter", 0.0, 0.0)]
)
def test_frozen_and_black_pictures_are_flagged(
    mjpeg_camera: Start, picture: str, frozen: float, black: float
) -> None:
    camera = mjpeg_camera(fps=20, picture=picture)
    camera_id = f"w-{picture}"
    frames = Frames()
    w = worker(camera_id, camera.url, frames, fps=20)
    w.start()
    try:
        wait_for(lambda: len(frames) >= 12, what="a full monitor window")
        assert metric("facestream_camera_frozen", camera_id) == frozen
        assert metric("facestream_camera_black", camera_id) == black
        fps = metric("facestream_camera_fps", camera_id)
        assert fps is not None and fps > 0
    finally:
        w.stop()


def test_the_monitor_clears_its_flags_when_the_picture_comes_back() -> None:
    monitor = CameraMonitor("m-direct", window=5)
    grey = np.full((36, 64, 3), 120, np.uint8)
    for _ in range(6):
        monitor.observe(grey)
    assert monitor.frozen and not monitor.black
    rng = np.random.default_rng(1)
    for _ in range(5):
        monitor.observe(rng.integers(0, 256, (36, 64, 3), dtype=np.uint8))
    assert not monitor.frozen
    dark = np.full((36, 64, 3), 3, np.uint8)
    for i in range(5):
        monitor.observe(dark + np.uint8(i))  # dark but changing: black, not frozen
    assert monitor.black and not monitor.frozen
    assert metric("facestream_camera_black", "m-direct") == 1.0
    assert metric("facestream_camera_frozen", "m-direct") == 0.0
