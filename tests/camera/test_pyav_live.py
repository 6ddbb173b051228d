"""Live H.264 streams read by PyAV, a real H.264 file played in real time two ways: by an FFmpeg
child over tcp:// (MPEG-TS), as a restreamer would, and over RTSP (RTP, RFC 6184), as an IP
camera does (tests/fixtures/rtsp_h264.py); the sampler decodes key frames only while the GOP fits
its interval, decodes a longer GOP only up to its last sample, and says so."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import imageio_ffmpeg
import numpy as np
import pytest

from facestream.camera.pyav import PyAvLiveStream
from facestream.camera.read_pacing import DEFAULT_READ_BATCH_S
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError
from tests.camera.h264 import all_frames, make_h264
from tests.fixtures.mjpeg import free_port
from tests.fixtures.rtsp_h264 import served

pytestmark = pytest.mark.slow

PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg")


Transport = Literal["tcp", "rtsp"]


def played(path: Path, transport: Transport = "tcp") -> Iterator[str]:
    """A URL where `path` plays in a loop, in real time: FFmpeg's MPEG-TS over tcp:// (stream
    copy), or the RTSP camera."""
    if transport == "rtsp":
        with served(path) as camera:
            yield camera.url
        return
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


def opened(url: str, fps: float, read_batch_s: float = DEFAULT_READ_BATCH_S) -> PyAvLiveStream:
    source = open_source(
        CameraSpec(camera_id="live-h264", url=url, fps=fps),
        default_fps=fps,
        stall_timeout_s=5,
        live_read_batch_s=read_batch_s,
    )
    assert isinstance(source, PyAvLiveStream)
    for _ in range(40):  # FFmpeg opens the file, then listens
        try:
            source.open()
            return source
        except CameraError:
            time.sleep(0.25)
    raise AssertionError("the FFmpeg camera never listened")


@pytest.fixture(params=["tcp", "rtsp"])
def gop1_stream(faces_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "g1.mp4", size=(640, 352), gop_s=1.0)
    yield from played(path, request.param)


def test_a_1s_gop_stream_at_1fps_decodes_key_frames_only(gop1_stream: str) -> None:
    source = opened(gop1_stream, 1.0)
    try:
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


@pytest.mark.parametrize("transport", ["tcp", "rtsp"])
def test_a_live_reader_wakes_once_a_batch_not_once_a_frame(
    faces_dir: Path, tmp_path: Path, transport: Transport
) -> None:
    """Read as each packet comes (batch 0), nearly every read waits for the network: a wake-up per
    frame. In bursts (0.25 s), a few a second, and every sample still comes, a second apart."""
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "g1.mp4", size=(640, 352), gop_s=1.0)
    waits: dict[float, tuple[int, int]] = {}
    for batch_s in (0.0, 0.25):
        url = next(stream := played(path, transport))
        source = opened(url, 1.0, read_batch_s=batch_s)
        try:
            assert source.read() is not None
            packets, waited = source.stats.packets, source.stats.waited_reads
            started = time.monotonic()
            samples = [source.read() for _ in range(4)]
            elapsed = time.monotonic() - started
            waits[batch_s] = (source.stats.packets - packets, source.stats.waited_reads - waited)
        finally:
            source.close()
            stream.close()
        assert all(s is not None for s in samples)
        assert 3.0 <= elapsed <= 5.0  # the sampler's 1 s ticks, not delayed by the naps
    (every_packets, every_waits), (burst_packets, burst_waits) = waits[0.0], waits[0.25]
    assert every_packets >= 75 and burst_packets >= 75  # 25 fps for about 4 s, none lost
    assert every_waits >= every_packets * 0.7
    assert burst_waits <= burst_packets / 3


@pytest.mark.parametrize(
    ("transport", "fps", "b_frames", "share"),
    [
        ("tcp", 1.0, 0, 26 / 50),
        ("tcp", 2.0, 0, 38 / 50),
        ("tcp", 1.0, 2, 26 / 50),
        ("rtsp", 1.0, 0, 26 / 50),
        ("rtsp", 2.0, 0, 38 / 50),
    ],
)
def test_a_2s_gop_stream_is_decoded_up_to_each_gops_last_sample_and_reported(
    faces_dir: Path,
    tmp_path: Path,
    transport: Transport,
    fps: float,
    b_frames: int,
    share: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each GOP is decoded from its key frame up to its last sample (1 fps: the 1 s frame; 2 fps:
    the 1.5 s one) and no further, and what is sampled is the stream's own picture: a frame
    between key frames decoded whole, not from a decoder that skipped what came before it. With
    B-frames a sample leaves the decoder after later packets, and the B-frames no other frame
    refers to are left undecoded: it is still the exact picture."""
    gop2_file = make_h264(
        [faces_dir / p for p in PHOTOS], tmp_path / "g2.mp4", size=(640, 352), gop_s=2.0, b_frames=b_frames
    )
    reference = all_frames(gop2_file)
    with caplog.at_level(logging.WARNING, logger="facestream.camera.pyav"):
        for url in played(gop2_file, transport):
            source = opened(url, fps)
            try:
                assert source.read() is not None
                packets, decoded = source.stats.packets, source.stats.decoded + source.stats.dropped
                dropped = source.stats.dropped
                images = [source.read() for _ in range(round(5 * fps))]
                new_packets = source.stats.packets - packets
                new_decoded = source.stats.decoded + source.stats.dropped - decoded
                new_dropped = source.stats.dropped - dropped
            finally:
                source.close()
    assert source.stats.gop_s == 2.0 and source.stats.gop_over_interval
    assert new_packets >= 100  # 25 fps for about 5 s
    assert share - 0.15 <= new_decoded / new_packets <= share + 0.15  # read up to the samples
    if b_frames:  # of those, the B-frames no other refers to and no sample is were not decoded
        assert 0.2 <= new_dropped / new_decoded <= 0.45
    else:
        assert new_dropped == 0
    for captured in images:
        assert captured is not None
        assert any(np.array_equal(captured.image, frame) for frame in reference)
    said = [r.getMessage() for r in caplog.records if "longer than its sampling interval" in r.getMessage()]
    assert len(said) == 1


def test_an_rtsp_sessions_first_gop_is_sampled(faces_dir: Path, tmp_path: Path) -> None:
    """Over RTSP FFmpeg gives a session's first packet, the camera's first key frame, no timestamp.
    The arrival time on the monotonic clock stood in for it, so the next key frame looked like the
    stream's clock going back and the schedule restarted there: nothing between the first two key
    frames was sampled, 3 s of a 4 s GOP at each connect. Now the key frame is placed a frame
    before the first timestamp (camera/stream_clock.py)."""
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "g4.mp4", size=(640, 352), gop_s=4.0)
    reference = all_frames(path)  # 200 pictures, key frames at 0 and 100
    with served(path) as camera:
        source = opened(camera.url, 1.0)
        try:
            samples = [source.read(), source.read()]
        finally:
            source.close()
    pictures = []
    for captured in samples:
        assert captured is not None
        (picture,) = [i for i, frame in enumerate(reference) if np.array_equal(captured.image, frame)]
        pictures.append(picture)
    # each session starts at picture 0; FFmpeg's probing at open buffers about the first second,
    # so the first sample the sampler takes is 1-2 s in, from the first GOP, not its second
    assert 0 < pictures[0] < 100
    assert 20 <= pictures[1] - pictures[0] <= 30  # a second later
