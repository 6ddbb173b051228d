"""Video files, still images and snapshot folders, read from real files."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facestream.camera.sources import Captured, SnapshotFolder, StillImage, VideoFile, open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError
from facestream.sample import make_camera_video
from tests.camera.h264 import all_frames as decoded_frames
from tests.camera.reading import read_all
from tests.camera.stills import flat_png

START = 1_700_000_000_000
NATIVE_FPS = 10.0
FRAMES = 30  # 2 photos x 1.5 s x 10 fps


@pytest.fixture(scope="module")
def video(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = sorted((faces_dir / "enroll").glob("*.jpg"))[:2]
    out = tmp_path_factory.mktemp("video") / "camera.mp4"
    return make_camera_video(photos, out, size=(160, 120), fps=NATIVE_FPS, seconds_each=1.5)


@pytest.fixture(scope="module")
def all_frames(video: Path) -> list[np.ndarray]:
    frames = decoded_frames(video)
    assert len(frames) == FRAMES
    return frames


def grid(fps: float, frames: int = FRAMES) -> list[int]:
    """Media ms of the first frame at or after each k/fps seconds (what media-time sampling takes)."""
    period = 1000.0 / NATIVE_FPS
    picks = []
    for k in range(10_000):
        index = math.ceil(round(k * (1000.0 / fps) / period, 6))
        if index >= frames:
            break
        if not picks or index * period > picks[-1]:
            picks.append(round(index * period))
    return picks


@pytest.mark.parametrize("fps", [4.0, 3.0, 5.0, 20.0])
def test_video_is_sampled_by_media_time_at_the_requested_rate(
    video: Path, all_frames: list[np.ndarray], fps: float
) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=fps, start_at_ms=START)
    sampled = read_all(VideoFile(spec, fps))
    expected = grid(fps)
    assert len(expected) == min(FRAMES, math.floor(2900 / (1000 / fps)) + 1)
    assert [c.captured_at_ms - START for c in sampled] == expected
    for captured in sampled:  # the very frame at that media time, not a neighbour
        index = (captured.captured_at_ms - START) // 100
        assert np.array_equal(captured.image, all_frames[index])


def test_without_start_at_ms_capture_times_start_at_open(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=5)
    before = int(time.time() * 1000)
    sampled = read_all(VideoFile(spec, 5))
    after = int(time.time() * 1000)
    assert before <= sampled[0].captured_at_ms <= after
    assert [c.captured_at_ms - sampled[0].captured_at_ms for c in sampled] == grid(5)


def test_a_looped_video_keeps_media_time_running(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=4, start_at_ms=START)
    one_pass = grid(4)
    sampled = read_all(VideoFile(spec, 4, loop=True), limit=3 * len(one_pass))
    times = [c.captured_at_ms - START for c in sampled]
    duration = FRAMES * 100
    assert times == one_pass + [t + duration for t in one_pass] + [t + 2 * duration for t in one_pass]


def test_realtime_files_are_paced_by_media_time_across_a_loop(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=10, start_at_ms=START)
    source = VideoFile(spec, 10, realtime=True, loop=True)
    source.open()
    began = time.monotonic()
    try:
        last = None
        for _ in range(FRAMES + 5):  # into the second pass
            last = source.read()
    finally:
        source.close()
    assert last is not None
    media_s = (last.captured_at_ms - START) / 1000
    assert media_s == pytest.approx(3.4)
    assert time.monotonic() - began >= media_s - 0.05  # never ahead of the media clock


def test_cancel_ends_a_paced_read_at_once(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=1, start_at_ms=START)
    source = VideoFile(spec, 1, realtime=True)
    source.open()
    assert source.read() is not None
    threading.Timer(0.2, source.cancel).start()
    began = time.monotonic()
    assert source.read() is None  # the next sample is 1 s of media away
    assert time.monotonic() - began < 0.9
    source.close()


def test_a_video_whose_frames_are_over_the_pixel_limit_is_refused_at_open(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=5)
    with pytest.raises(CameraError, match=r"160x120 frames are over the limit of 19,199 pixels"):
        open_source(spec, default_fps=2, max_pixels=160 * 120 - 1).open()
    assert len(read_all(VideoFile(spec, 5, max_pixels=160 * 120))) == 15  # at the limit: read whole


def test_a_missing_video_is_a_camera_error(tmp_path: Path) -> None:
    spec = CameraSpec(camera_id="gone", url=str(tmp_path / "nothing.mp4"))
    with pytest.raises(CameraError, match="cannot open video"):
        open_source(spec, default_fps=2).open()


def test_a_still_image_is_read_once_with_its_file_time(faces_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "still.jpg"
    photo.write_bytes((faces_dir / "enroll" / "obama_1.jpg").read_bytes())
    os.utime(photo, ns=(START * 1_000_000, START * 1_000_000))
    source = open_source(CameraSpec(camera_id="still", url=str(photo)), default_fps=2)
    assert isinstance(source, StillImage)
    source.open()
    first = source.read()
    assert first is not None and first.captured_at_ms == START
    assert first.image.shape == cv2.imread(str(photo)).shape
    assert source.read() is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(CameraError, match="not a readable image"):
        open_source(CameraSpec(camera_id="b", url=str(broken)), default_fps=2).open()


# -- snapshot folders ----------------------------------------------------------------------------


def snapshot(folder: Path, name: str, value: int, at_ms: int) -> Path:
    """A JPEG of one flat grey `value`, stamped with `at_ms` as its modification time."""
    path = folder / name
    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), value, np.uint8))
    assert ok
    path.write_bytes(data.tobytes())
    os.utime(path, ns=(at_ms * 1_000_000, at_ms * 1_000_000))
    return path


def grey(captured: Captured | None) -> int:
    assert captured is not None
    return round(float(captured.image.mean()))


def test_a_snapshot_folder_yields_the_newest_new_image_then_stalls(tmp_path: Path) -> None:
    spec = CameraSpec(camera_id="snap", url=str(tmp_path), fps=10)
    source = open_source(spec, default_fps=2, stall_timeout_s=0.6)
    assert isinstance(source, SnapshotFolder)
    snapshot(tmp_path, "a.jpg", 40, START)
    snapshot(tmp_path, "b.jpg", 80, START + 1000)
    (tmp_path / "notes.txt").write_text("not an image")
    source.open()
    first = source.read()
    assert grey(first) == 80 and first is not None and first.captured_at_ms == START + 1000
    with pytest.raises(CameraError, match=r"no new snapshot for 0.6s"):
        source.read()
    snapshot(tmp_path, "c.jpg", 120, START + 2000)
    snapshot(tmp_path, "d.jpg", 160, START + 3000)
    assert grey(source.read()) == 160  # the newest; c.jpg is already old news
    # a reconnect (what the worker does after the stall) does not publish old images again
    source.close()
    source.open()
    with pytest.raises(CameraError):
        source.read()


def test_a_snapshot_still_being_written_is_taken_only_once_complete(tmp_path: Path) -> None:
    spec = CameraSpec(camera_id="snap", url=str(tmp_path), fps=10)
    source = open_source(spec, default_fps=2, stall_timeout_s=0.5)
    path = snapshot(tmp_path, "e.jpg", 200, START)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # an upload in progress
    os.utime(path, ns=(START * 1_000_000, START * 1_000_000))
    source.open()
    with pytest.raises(CameraError):
        source.read()
    path.write_bytes(whole)
    os.utime(path, ns=((START + 10) * 1_000_000, (START + 10) * 1_000_000))
    assert grey(source.read()) == 200


def test_a_snapshot_over_the_pixel_limit_is_skipped_undecoded(tmp_path: Path) -> None:
    snapshot(tmp_path, "small.jpg", 60, START)
    big = tmp_path / "big.png"
    big.write_bytes(flat_png(30000, 30000))  # 2.7 GB if it were decoded
    os.utime(big, ns=((START + 1000) * 1_000_000, (START + 1000) * 1_000_000))
    spec = CameraSpec(camera_id="snap", url=str(tmp_path), fps=10)
    source = open_source(spec, default_fps=2, stall_timeout_s=0.5)
    source.open()
    first = source.read()
    assert grey(first) == 60 and first is not None and first.captured_at_ms == START


def test_a_missing_folder_is_a_camera_error(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    source = open_source(CameraSpec(camera_id="snap", url=str(folder), fps=10), default_fps=2)
    folder.rmdir()
    with pytest.raises(CameraError, match="not a folder"):
        source.open()
