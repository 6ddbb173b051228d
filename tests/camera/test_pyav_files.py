"""Video files read by PyAV (camera/pyav.py) on real 720p 25 fps H.264: key frames only when the GOP
fits the sampling interval, decode on demand (and said so) when it does not, and the same
pictures, capture times, resume, looping and pacing the rest of the sampler relies on."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from facestream.camera.fleet import CameraFleet
from facestream.camera.pyav import PyAvLiveStream, PyAvVideoFile
from facestream.camera.sources import LiveStream, VideoFile, open_source
from facestream.camera.spec import CameraSpec, parse_camera
from facestream.errors import ConfigError
from facestream.messages import Frame
from facestream.settings import SamplerSettings
from facestream.vision.faces import FaceFinder
from tests.camera.h264 import all_frames, make_h264
from tests.camera.reading import read_all
from tests.fixtures.mjpeg import wait_for

START = 1_700_000_000_000
FPS = 25.0
SECONDS = 8.0
FRAME_MS = 1000.0 / FPS
PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg")


@pytest.fixture(scope="module")
def gop1(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("h264") / "gop1.mp4"
    return make_h264([faces_dir / p for p in PHOTOS], out, seconds=SECONDS, gop_s=1.0)


@pytest.fixture(scope="module")
def gop4(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s GOP with B-frames: packets come out of presentation order."""
    out = tmp_path_factory.mktemp("h264") / "gop4.mp4"
    return make_h264([faces_dir / p for p in PHOTOS], out, seconds=SECONDS, gop_s=4.0, b_frames=2)


def spec(path: Path, fps: float = 1.0, **kw: object) -> CameraSpec:
    return CameraSpec(camera_id=f"cam-{path.stem}", url=str(path), fps=fps, start_at_ms=START, **kw)


def check_times_and_pictures(path: Path, sampled: list[np.ndarray], times: list[int]) -> None:
    """One frame per second of media, each within a frame interval of its sample time, and the
    very picture OpenCV decodes at that time."""
    assert times == pytest.approx([1000 * k for k in range(round(SECONDS))], abs=FRAME_MS)
    reference = all_frames(path)
    for image, t in zip(sampled, times, strict=True):
        assert np.array_equal(image, reference[round(t / FRAME_MS)])


def test_a_1s_gop_sampled_at_1fps_decodes_key_frames_only(gop1: Path) -> None:
    source = open_source(spec(gop1), default_fps=2)
    assert isinstance(source, PyAvVideoFile)
    sampled = read_all(source)
    times = [c.captured_at_ms - START for c in sampled]
    check_times_and_pictures(gop1, [c.image for c in sampled], times)
    stats = source.stats
    assert stats.packets == SECONDS * FPS == 200
    assert stats.decoded == len(sampled) == 8  # 1 in 25 frames decoded, not 25 in 25
    assert stats.gop_s == 1.0 and not stats.gop_over_interval


def test_a_4s_gop_is_decoded_on_demand_and_reported(gop4: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = open_source(spec(gop4), default_fps=2)
    with caplog.at_level(logging.WARNING, logger="facestream.camera.pyav"):
        sampled = read_all(source)
        source.open()  # reopened (a reconnect): still said once per camera
        while source.read() is not None:
            pass
        source.close()
    times = [c.captured_at_ms - START for c in sampled]
    assert times == [1000 * k for k in range(8)]  # the first frame at or after each second
    check_times_and_pictures(gop4, [c.image for c in sampled], times)
    stats = source.decode_stats
    assert stats is not None and stats.gop_s == 4.0 and stats.gop_over_interval
    # each GOP read up to its last sample (3 s in), not to its end: 2 x (76 + B-frame slack) per pass;
    # of those, the B-frames no other frame refers to and no sample is were never decoded
    assert 2 * 152 <= stats.decoded + stats.dropped < 2 * 2 * 100
    assert 0.25 <= stats.dropped / (stats.decoded + stats.dropped) <= 0.4
    said = [r.getMessage() for r in caplog.records if "longer than its sampling interval" in r.getMessage()]
    assert len(said) == 1 and "key frames every 4 s" in said[0]


def test_the_gop_and_decode_work_are_in_the_sampler_metrics(gop1: Path, gop4: Path) -> None:
    frames: list[Frame] = []
    fleet = CameraFleet(SamplerSettings(fps=1), lambda frame, _spec: frames.append(frame))
    try:
        fleet.apply("cam-gop1", spec(gop1), ("cameras", 0))
        fleet.apply("cam-gop4", spec(gop4), ("cameras", 0))
        wait_for(lambda: len(frames) == 16, timeout_s=60, what="both files")
        time.sleep(0.2)

        def value(name: str, camera: str) -> float | None:
            return REGISTRY.get_sample_value(name, {"camera": camera})

        assert value("facestream_camera_gop_over_interval", "cam-gop1") == 0
        assert value("facestream_camera_gop_over_interval", "cam-gop4") == 1
        assert value("facestream_camera_gop_seconds", "cam-gop4") == 4.0
        assert value("facestream_camera_frames_decoded_total", "cam-gop1") == 8
        # the 4 s GOP with B-frames: each GOP read up to its 3 s sample, its non-reference frames dropped
        decoded = value("facestream_camera_frames_decoded_total", "cam-gop4")
        dropped = value("facestream_camera_frames_dropped_total", "cam-gop4")
        assert decoded is not None and dropped is not None and 152 <= decoded + dropped < 200 and dropped > 0
        assert value("facestream_camera_frames_dropped_total", "cam-gop1") == 0
    finally:
        fleet.stop_all()
    assert value("facestream_camera_gop_over_interval", "cam-gop4") is None  # gone with the camera
    assert value("facestream_camera_frames_dropped_total", "cam-gop4") is None


@pytest.mark.parametrize("cut", [0, 3, -2])
def test_a_reopened_file_goes_on_after_the_frame_it_was_told(gop4: Path, gop1: Path, cut: int) -> None:
    for path in (gop1, gop4):
        whole = read_all(PyAvVideoFile(spec(path), 1))
        source = PyAvVideoFile(spec(path), 1)
        source.resume_after(whole[cut].captured_at_ms)
        rest = read_all(source)
        assert [c.captured_at_ms for c in rest] == [c.captured_at_ms for c in whole[cut:][1:]]
        for a, b in zip(rest, whole[cut:][1:], strict=True):
            assert np.array_equal(a.image, b.image)
        if path == gop1:  # what was published before is not even decoded
            assert source.stats.decoded == len(rest)


def test_a_looped_file_keeps_media_time_running(gop1: Path) -> None:
    sampled = read_all(PyAvVideoFile(spec(gop1, fps=2), 2, loop=True), limit=40)
    times = [c.captured_at_ms - START for c in sampled]
    # 0.5 s sampling: between key frames on demand; the first 40 ms frame at or after each half second
    assert times == [math.ceil(500 * k / FRAME_MS) * round(FRAME_MS) for k in range(40)]
    assert times[16] == 8000  # the second pass begins where the first ended


def test_a_realtime_file_is_paced_by_media_time(gop1: Path) -> None:
    source = PyAvVideoFile(spec(gop1, fps=2), 2, realtime=True)
    source.open()
    began = time.monotonic()
    try:
        for _ in range(4):
            last = source.read()
    finally:
        source.close()
    assert last is not None and last.captured_at_ms - START == 1520  # the first frame at/after 1.5 s
    assert time.monotonic() - began >= 1.47  # never ahead of the media clock


def test_the_decoder_is_chosen_per_camera(gop1: Path) -> None:
    assert isinstance(open_source(spec(gop1, decoder="opencv"), default_fps=1), VideoFile)
    assert isinstance(open_source(spec(gop1, decoder="pyav"), default_fps=1), PyAvVideoFile)
    assert isinstance(
        open_source(spec(gop1).model_copy(update={"url": "rtsp://cam/live"}), default_fps=1), PyAvLiveStream
    )
    rtsp_opencv = CameraSpec(camera_id="c", url="rtsp://cam/live", decoder="opencv")
    assert type(open_source(rtsp_opencv, default_fps=1)) is LiveStream
    with pytest.raises(ConfigError, match="decoder 'pyav' does not read http"):
        parse_camera({"camera_id": "c", "url": "http://cam/video.mjpg", "decoder": "pyav"})
    with pytest.raises(ConfigError, match="decoder"):
        parse_camera({"camera_id": "c", "url": "x.mp4", "decoder": "gstreamer"})


def test_pyav_and_opencv_frames_find_the_same_faces(gop1: Path, finder: FaceFinder) -> None:
    pyav = read_all(PyAvVideoFile(spec(gop1), 1))
    opencv = read_all(VideoFile(spec(gop1), 1))
    assert [c.captured_at_ms for c in pyav] == [c.captured_at_ms for c in opencv]
    for a, b in zip(pyav[::3], opencv[::3], strict=True):
        found_a = [o.bbox for o in finder.find(a.image)]
        found_b = [o.bbox for o in finder.find(b.image)]
        assert found_a and found_a == found_b


def test_key_frames_off_the_sample_grid_give_one_frame_per_interval(faces_dir: Path, tmp_path: Path) -> None:
    """Key frames every 0.6 s sampled at 1 fps: each sample takes the nearest key frame, never two
    frames for one sample time, and only key frames are decoded."""
    path = make_h264([faces_dir / p for p in PHOTOS], tmp_path / "gop06.mp4", size=(320, 176), gop_s=0.6)
    source = PyAvVideoFile(spec(path), 1)
    times = [c.captured_at_ms - START for c in read_all(source)]
    assert times == [0, 1200, 1800, 3000, 4200, 4800, 6000, 7200]  # 1000 -> 1200, 2000 -> 1800, ...
    assert all(abs(t - 1000 * k) <= 300 for k, t in enumerate(times))  # within half a GOP
    assert source.stats.decoded == len(times) and not source.stats.gop_over_interval


def test_a_gop_too_long_to_hold_is_decoded_as_it_comes(gop4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: past MAX_GOP_PACKETS a GOP is decoded as it streams, same samples."""
    monkeypatch.setattr("facestream.camera.pyav.MAX_GOP_PACKETS", 30)
    source = PyAvVideoFile(spec(gop4), 1)
    sampled = read_all(source)
    times = [c.captured_at_ms - START for c in sampled]
    assert times == [1000 * k for k in range(8)]
    check_times_and_pictures(gop4, [c.image for c in sampled], times)
    assert source.stats.decoded == 200  # every packet: the price of not holding the GOP
