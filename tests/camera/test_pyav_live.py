"""Live H.264 streams read by PyAV: an FFmpeg child plays a real H.264 file in real time over
tcp:// (MPEG-TS), as a camera or a restreamer would; the sampler decodes key frames only while
the GOP fits its interval, and says so when it does not."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest

from facestream.camera.pyav import PyAvLiveStream
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError
from tests.camera.h264 import make_h264
from tests.fixtures.mjpeg import free_port

pytestmark = pytest.mark.slow

PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg")


def played(path: Path) -> Iterator[str]:
    """A tcp:// URL where FFmpeg plays `path` in a loop, in real time (stream copy)."""
    port = free_port()
    child = subprocess.Popen(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "fatal", "-re",
            "-stream_loop", "-1", "-i", str(path), "-c", "copy", "-f", "mpegts",
            f"tcp://127.0.0.1:{port}?listen=1",
        ],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


def opened(url: str, fps: float) -> PyAvLiveStream:
    source = open_source(
        CameraSpec(camera_id="live-h264", url=url, fps=fps), default_fps=fps, stall_timeout_s=5
    )
    assert isinstance(source, PyAvLiveStream)
    for _ in range(40):  # FFmpeg opens the file, then listens
        try:
            source.open()
            return source
        except CameraError:
            time.sleep(0.25)
    raise AssertionError("the FFmpeg camera never listened")


@pytest.fixture
def gop1_stream(faces_dir: Path, tmp_path: Path) -> Iterator[str]:
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "g1.mp4", size=(640, 352), gop_s=1.0)
    yield from played(path)


@pytest.fixture
def gop2_stream(faces_dir: Path, tmp_path: Path) -> Iterator[str]:
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "g2.mp4", size=(640, 352), gop_s=2.0)
    yield from played(path)


def test_a_1s_gop_stream_at_1fps_decodes_key_frames_only(gop1_stream: str) -> None:
    source = opened(gop1_stream, 1.0)
    try:
        for _ in range(2):  # the GOP is known after two key frames; until then every frame is decoded
            assert source.read() is not None
        packets, decoded = source.stats.packets, source.stats.decoded
        for _ in range(3):
            captured = source.read()
            assert captured is not None and captured.image.shape == (352, 640, 3)
        new_packets, new_decoded = source.stats.packets - packets, source.stats.decoded - decoded
    finally:
        source.close()
    assert source.stats.gop_s == 1.0 and not source.stats.gop_over_interval
    assert new_packets >= 50  # 25 fps for about 3 s
    assert new_decoded <= new_packets / 10  # about 1 in 25


def test_a_2s_gop_stream_at_2fps_is_decoded_whole_and_reported(
    gop2_stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="facestream.camera.pyav"):
        source = opened(gop2_stream, 2.0)
        try:
            for _ in range(8):
                assert source.read() is not None
        finally:
            source.close()
    assert source.stats.gop_s == 2.0 and source.stats.gop_over_interval
    assert source.stats.decoded >= source.stats.packets - 2  # the newest frame must be ready at any tick
    said = [r.getMessage() for r in caplog.records if "longer than its sampling interval" in r.getMessage()]
    assert len(said) == 1
