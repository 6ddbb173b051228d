"""Live cameras against a real local HTTP camera (tests/fixtures/mjpeg.py)."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from facestream.camera.mjpeg import open_mjpeg
from facestream.camera.read_pacing import DEFAULT_READ_BATCH_S
from facestream.camera.sources import LiveStream, open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError
from tests.fixtures.mjpeg import (
    BOUNDARY,
    MjpegCamera,
    RtspCamera,
    counter_video,
    free_port,
    jpeg,
    part,
    read_counter,
)

Start = Callable[..., MjpegCamera]


def live(camera: MjpegCamera, fps: float, stall_timeout_s: float = 1.0) -> LiveStream:
    source = open_source(
        CameraSpec(camera_id="live", url=camera.url), default_fps=fps, stall_timeout_s=stall_timeout_s
    )
    assert isinstance(source, LiveStream)
    return source


def test_a_slow_reader_gets_the_newest_frame_not_a_backlog(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20)
    source = live(camera, fps=10)
    source.open()
    try:
        assert source.transport == "mjpeg"
        counters = []
        for _ in range(5):
            captured = source.read()
            assert captured is not None
            counters.append(read_counter(captured.image))
            # the frame the camera is showing now, give or take a frame or two in flight
            assert camera.counter_now() - counters[-1] <= 3
            assert abs(captured.captured_at_ms - time.time() * 1000) < 1000
            time.sleep(0.4)  # a consumer far slower than the camera: 8 frames arrive meanwhile
    finally:
        source.close()
    gaps = [b - a for a, b in itertools.pairwise(counters)]
    assert all(gap >= 6 for gap in gaps), f"frames were worked through in order: {counters}"


def test_the_sampler_never_takes_the_same_frame_twice(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=5)
    source = live(camera, fps=20)  # asks faster than the camera sends
    source.open()
    try:
        counters = []
        for _ in range(6):
            captured = source.read()
            assert captured is not None
            counters.append(read_counter(captured.image))
    finally:
        source.close()
    assert counters == sorted(set(counters))


def test_credentials_are_sent_and_wrong_ones_refused(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=10, credentials=("op", "Secr3t"))
    source = live(camera, fps=10)
    source.open()
    try:
        assert source.read() is not None
    finally:
        source.close()
    assert camera.unauthorised == 0 and camera.connections == 1
    wrong = CameraSpec(camera_id="live", url=camera.url.replace("Secr3t", "guess"))
    with pytest.raises(CameraError, match="HTTP 401") as caught:
        LiveStream(wrong, 10, stall_timeout_s=1.0).open()
    assert "guess" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


def test_a_dropped_stream_is_a_camera_error(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20, mode="drop", fail_after=5)
    source = live(camera, fps=10)
    source.open()
    got = 0
    try:
        with pytest.raises(CameraError, match="stream ended"):
            while True:
                assert source.read() is not None
                got += 1
    finally:
        source.close()
    assert 1 <= got <= 5


def test_a_stalled_stream_is_a_camera_error_after_the_stall_timeout(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20, mode="stall", fail_after=3)
    source = live(camera, fps=10, stall_timeout_s=0.8)
    source.open()
    try:
        assert source.read() is not None
        began = time.monotonic()
        with pytest.raises(CameraError, match=r"stalled|no new frame"):
            while True:
                source.read()
        assert 0.5 <= time.monotonic() - began < 5
    finally:
        source.close()


def test_a_camera_that_accepts_but_never_answers_fails_to_open(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(mode="silent")
    began = time.monotonic()
    with pytest.raises(CameraError, match="cannot connect"):
        live(camera, fps=10, stall_timeout_s=0.5).open()
    assert time.monotonic() - began < 5
    with pytest.raises(CameraError, match="cannot connect"):
        LiveStream(CameraSpec(camera_id="x", url=f"http://127.0.0.1:{free_port()}/v"), 10).open()


def test_garbage_in_the_stream_is_survived(mjpeg_camera: Start) -> None:
    # every other tick: junk between parts, a part of random bytes, a truncated JPEG
    camera = mjpeg_camera(fps=20, mode="garbage")
    source = live(camera, fps=7)
    source.open()
    try:
        counters = []
        for _ in range(8):
            captured = source.read()
            assert captured is not None
            counters.append(read_counter(captured.image))
    finally:
        source.close()
    assert camera.garbage_sent >= 4
    assert counters == sorted(set(counters)) and counters[-1] - counters[0] >= 8
    assert camera.connections == 1  # survived without reconnecting


def test_the_mjpeg_reader_resynchronises_on_every_kind_of_bad_part(mjpeg_camera: Start) -> None:
    frames = [jpeg(i) for i in range(3)]
    oversized_claim = f"--{BOUNDARY}\r\nContent-Length: 999999999999\r\n\r\n".encode() + frames[2] + b"\r\n"
    camera = mjpeg_camera(
        mode="script",
        script=[
            b"\r\n\x00\x01stray bytes before the first boundary\r\n",
            part(frames[0]),
            part(b"random \x00 bytes"),
            b"junk between parts",
            part(frames[1], length=False),
            oversized_claim,
            part(frames[2][:300]),
            part(frames[2]),
        ],
    )
    reader = open_mjpeg(camera.url, timeout_s=0.5)
    assert reader is not None
    try:
        bodies = [reader.next_part() for _ in range(6)]
        # a part whose length cannot be true ends at the next boundary instead
        assert bodies == [frames[0], b"random \x00 bytes", frames[1], frames[2], frames[2][:300], frames[2]]
        assert reader.skipped_bytes > 0
        with pytest.raises(CameraError, match="stalled"):
            reader.next_part()
    finally:
        reader.close()


def test_a_newest_frame_that_does_not_decode_is_skipped_and_counted(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(mode="script", script=[part(jpeg(1)), part(b"\xff\xd8 not really a jpeg")])
    source = live(camera, fps=5, stall_timeout_s=0.6)
    source.open()
    try:
        with pytest.raises(CameraError, match=r"stalled|no new frame for 0.6s \(1 undecodable so far\)"):
            while True:
                captured = source.read()
                assert captured is not None and read_counter(captured.image) == 1
    finally:
        source.close()
    assert source.undecodable == 1


def test_other_http_streams_go_to_ffmpeg(mjpeg_camera: Start, tmp_path: Path) -> None:
    video = counter_video(tmp_path / "counter.avi", frames=30)
    camera = mjpeg_camera(mode="video", video=video.read_bytes(), credentials=("op", "Secr3t"))
    source = live(camera, fps=10)
    source.open()
    try:
        assert source.transport == "ffmpeg"
        captured = source.read()
        assert captured is not None
        assert read_counter(captured.image) == 29  # FFmpeg read the whole body: the newest is the last
        with pytest.raises(CameraError, match="stream ended"):
            source.read()
    finally:
        source.close()
    assert len(camera.requests) == 2  # facestream's look at the content type, then FFmpeg's own


def test_close_interrupts_a_blocked_read_at_once(mjpeg_camera: Start) -> None:
    camera = mjpeg_camera(fps=20, mode="stall", fail_after=1)
    source = live(camera, fps=10, stall_timeout_s=30)
    source.open()
    assert source.read() is not None
    began = time.monotonic()
    source.close()
    assert time.monotonic() - began < 2


def test_cancel_wakes_a_read_waiting_for_a_new_frame(mjpeg_camera: Start) -> None:
    """read() sleeps until the grab thread hands a frame over; cancel() must wake it too, not
    leave it to the stall timeout."""
    camera = mjpeg_camera(fps=20, mode="stall", fail_after=1)
    source = live(camera, fps=10, stall_timeout_s=30)
    source.open()
    try:
        assert source.read() is not None
        threading.Timer(0.3, source.cancel).start()
        began = time.monotonic()
        assert source.read() is None
        assert time.monotonic() - began < 2
    finally:
        source.close()


# -- RTSP, through FFmpeg -------------------------------------------------------------------------


@pytest.mark.parametrize(("decoder", "transport"), [("auto", "pyav"), ("opencv", "ffmpeg")])
def test_rtsp_gives_the_newest_frame_with_credentials(
    rtsp_camera: Callable[..., RtspCamera], decoder: Literal["auto", "opencv"], transport: str
) -> None:
    camera = rtsp_camera(fps=20, credentials=("op", "Secr3t"))
    spec = CameraSpec(camera_id="rtsp", url=camera.url, decoder=decoder)
    source = open_source(spec, default_fps=5, stall_timeout_s=3)
    assert isinstance(source, LiveStream)
    # PyAV reads live streams in bursts (camera/read_pacing.py): a frame may wait that much longer
    behind = 4 + (math.ceil(DEFAULT_READ_BATCH_S * camera.fps) if transport == "pyav" else 0)
    source.open()
    try:
        assert source.transport == transport
        counters = []
        for _ in range(4):
            captured = source.read()
            assert captured is not None
            counters.append(read_counter(captured.image))
            assert camera.counter_now() - counters[-1] <= behind
            time.sleep(0.3)
    finally:
        source.close()
    assert all(b - a >= 4 for a, b in itertools.pairwise(counters)), counters
    assert camera.unauthorised >= 1 and camera.sessions == 1  # FFmpeg answered the Basic challenge


@pytest.mark.parametrize(
    ("mode", "error"), [("drop", "stream ended"), ("stall", "stream ended|no new frame")]
)
def test_a_failing_rtsp_stream_is_a_camera_error(
    rtsp_camera: Callable[..., RtspCamera], mode: str, error: str
) -> None:
    camera = rtsp_camera(fps=20, mode=mode, fail_after=10)
    source = open_source(CameraSpec(camera_id="rtsp", url=camera.url), default_fps=10, stall_timeout_s=1.5)
    source.open()
    try:
        assert source.read() is not None
        with pytest.raises(CameraError, match=error):
            while True:
                source.read()
    finally:
        source.close()


def test_wrong_rtsp_credentials_fail_to_open_without_showing_them(
    rtsp_camera: Callable[..., RtspCamera], capfd: pytest.CaptureFixture[str]
) -> None:
    camera = rtsp_camera(credentials=("op", "Secr3t"))
    url = camera.url.replace("Secr3t", "Wr0ngPass")
    with pytest.raises(CameraError, match="cannot connect") as caught:
        open_source(CameraSpec(camera_id="rtsp", url=url), default_fps=5, stall_timeout_s=2).open()
    out, err = capfd.readouterr()
    assert "Wr0ngPass" not in str(caught.value) + out + err
    assert camera.sessions == 0
