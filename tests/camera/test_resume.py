"""A file camera stopped and started again in the same sampler goes on after its last published
frame instead of publishing the file again (after a broker restart the sampler's group is
rejoined and every camera restarted: before this, each restart played every file again).

Real video files, real sources, a real fleet; only the publishing is a list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from facestream.camera.fleet import CameraFleet
from facestream.camera.sampler import Backoff, CameraWorker, FrameEncoder
from facestream.camera.sources import SnapshotFolder, StillImage, VideoFile, open_source
from facestream.camera.spec import CameraSpec
from facestream.errors import CameraError, DeliveryError
from facestream.messages import Frame
from facestream.sample import make_camera_video
from facestream.settings import SamplerSettings
from tests.camera.reading import read_all
from tests.fixtures.mjpeg import wait_for

START = 1_700_000_000_000
P0 = ("cameras", 0)


@pytest.fixture(scope="module")
def video(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps: 30 frames, 2 photos."""
    photos = sorted((faces_dir / "enroll").glob("*.jpg"))[:2]
    out = tmp_path_factory.mktemp("resume") / "camera.mp4"
    return make_camera_video(photos, out, size=(160, 120), fps=10.0, seconds_each=1.5)


@pytest.mark.parametrize("fps", [10.0, 3.0])
@pytest.mark.parametrize("cut", [0, 4, -2, -1])
def test_a_reopened_video_goes_on_after_the_frame_it_was_told(video: Path, fps: float, cut: int) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=fps, start_at_ms=START)
    whole = read_all(VideoFile(spec, fps))
    source = VideoFile(spec, fps)
    source.resume_after(whole[cut].captured_at_ms)
    rest = read_all(source)
    assert [c.captured_at_ms for c in rest] == [c.captured_at_ms for c in whole[cut:][1:]]
    for a, b in zip(rest, whole[cut:][1:], strict=True):  # the very same pictures, not neighbours
        assert np.array_equal(a.image, b.image)


def test_without_a_fixed_start_or_when_looping_a_video_plays_from_its_start(video: Path) -> None:
    """Without start_at_ms capture times start at open (they name no media position), and a looping
    file plays a live camera: neither can say where it was, so neither skips anything."""
    unpinned = CameraSpec(camera_id="file-cam", url=str(video), fps=5)
    source = VideoFile(unpinned, 5)
    source.resume_after(int(time.time() * 1000) + 60_000)
    assert len(read_all(source)) == 15
    pinned = CameraSpec(camera_id="file-cam", url=str(video), fps=5, start_at_ms=START)
    looping = VideoFile(pinned, 5, loop=True)
    looping.resume_after(START + 2000)
    assert read_all(looping, limit=3)[0].captured_at_ms == START


def test_a_resumed_realtime_video_is_paced_from_where_it_resumes(video: Path) -> None:
    spec = CameraSpec(camera_id="file-cam", url=str(video), fps=2, start_at_ms=START)
    source = VideoFile(spec, 2, realtime=True)
    source.resume_after(START + 2000)
    source.open()
    began = time.monotonic()
    try:
        first = source.read()
    finally:
        source.close()
    assert first is not None and first.captured_at_ms == START + 2500
    # Half a second of media after the resume point; paced from the file's start it would be 2.5 s.
    assert time.monotonic() - began < 1.5


def test_a_still_or_a_snapshot_already_published_is_not_published_again(tmp_path: Path) -> None:
    image = np.full((40, 60, 3), 120, np.uint8)
    path = tmp_path / "still.png"
    assert cv2.imwrite(str(path), image)
    taken_at = int(path.stat().st_mtime * 1000)
    spec = CameraSpec(camera_id="still", url=str(path))
    still = StillImage(spec, 2)
    still.resume_after(taken_at)
    still.open()
    assert still.read() is None
    earlier = StillImage(spec, 2)
    earlier.resume_after(taken_at - 1)
    earlier.open()
    captured = earlier.read()
    assert captured is not None and captured.captured_at_ms == taken_at

    folder = tmp_path / "snapshots"
    folder.mkdir()
    snap = folder / "a.png"
    assert cv2.imwrite(str(snap), image)
    snap_ms = snap.stat().st_mtime_ns // 1_000_000
    source = SnapshotFolder(CameraSpec(camera_id="snap", url=str(folder), fps=20), 20, stall_timeout_s=0.3)
    source.resume_after(snap_ms)
    source.open()
    with pytest.raises(CameraError, match="no new snapshot"):
        source.read()


class Published:
    def __init__(self, refuse: bool = False) -> None:
        self.frames: list[Frame] = []
        self._lock = threading.Lock()
        self._refuse = refuse

    def __call__(self, frame: Frame, spec: CameraSpec | None = None) -> bool:
        with self._lock:
            if self._refuse:
                return False
            self.frames.append(frame)
            return True

    def ids(self) -> list[str]:
        with self._lock:
            return [f.ref.frame_id for f in self.frames]


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def fleet(published: Published) -> Iterator[CameraFleet]:
    f = CameraFleet(SamplerSettings(fps=10, realtime_files=True), published)
    yield f
    f.stop_all()


def whole_file_ids(spec: CameraSpec) -> list[str]:
    return [f"{spec.camera_id}@{c.captured_at_ms}" for c in read_all(VideoFile(spec, spec.fps or 10))]


def test_a_camera_revoked_and_assigned_again_publishes_every_frame_once(
    fleet: CameraFleet, published: Published, video: Path
) -> None:
    spec = CameraSpec(camera_id="gate", url=str(video), fps=10, start_at_ms=START)
    want = whole_file_ids(spec)
    fleet.apply("gate", spec, P0)
    wait_for(lambda: len(published.ids()) >= 6, what="the first frames")
    fleet.revoke([P0])  # the partition goes (lost in a broker restart, a rejoin)...
    assert fleet.cameras == []
    stopped_at = len(published.ids())
    assert stopped_at < len(want), "the file ended before the revoke: the test shows nothing"
    fleet.apply("gate", spec, P0)  # ...and comes back with the same config
    fleet.revoke([P0])  # twice, as after a second restart
    fleet.apply("gate", spec, P0)
    wait_for(lambda: len(published.ids()) >= len(want), timeout_s=30, what="the whole file")
    time.sleep(0.5)  # anything published twice would show by now
    assert published.ids() == want


def test_a_changed_config_plays_the_file_again_from_its_start(
    fleet: CameraFleet, published: Published, video: Path
) -> None:
    spec = CameraSpec(camera_id="gate", url=str(video), fps=10, start_at_ms=START)
    fleet.apply("gate", spec, P0)
    wait_for(lambda: len(published.ids()) >= 4, what="the first frames")
    fleet.revoke([P0])
    moved = spec.model_copy(update={"start_at_ms": START + 100_000})  # a new stream, new ids
    fleet.apply("gate", moved, P0)
    wait_for(lambda: f"gate@{START + 100_000}" in published.ids(), timeout_s=10, what="the new start")


def test_a_frame_publish_refuses_is_dropped_and_the_camera_goes_on(video: Path) -> None:
    spec = CameraSpec(camera_id="refused-cam", url=str(video), fps=10, start_at_ms=START)
    worker = CameraWorker(
        spec, open_source(spec, default_fps=10), FrameEncoder(), Published(refuse=True), Backoff()
    )
    worker.start()
    assert worker.finished.wait(30), "a refused frame stopped the camera"
    counted = REGISTRY.get_sample_value("facestream_frames_published_total", {"camera": "refused-cam"})
    reconnects = REGISTRY.get_sample_value("facestream_camera_reconnects_total", {"camera": "refused-cam"})
    assert counted == 0  # dropped frames are not counted as published
    assert reconnects == 0  # and the camera was never reopened for them
    assert worker.last_captured_at_ms == START + 2900  # it went through to the file's last frame


class Lookup:
    """Where a former sampler stopped, as the frame-sampler answers it from `frames`."""

    def __init__(self, answers: list[int | Exception | None]) -> None:
        self.answers = answers
        self.asked: list[CameraSpec] = []

    def __call__(self, spec: CameraSpec) -> int | None:
        self.asked.append(spec)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_camera_new_to_this_process_goes_on_where_a_former_sampler_stopped(
    published: Published, video: Path
) -> None:
    spec = CameraSpec(camera_id="gate", url=str(video), fps=10, start_at_ms=START)
    want = whole_file_ids(spec)
    lookup = Lookup([DeliveryError("Kafka does not answer"), START + 1500])  # fails once, then knows
    fleet = CameraFleet(SamplerSettings(fps=10, reconnect_initial_s=0.2), published, last_published=lookup)
    rest = [i for i in want if int(i.split("@")[1]) > START + 1500]
    try:
        fleet.apply("gate", spec, P0)
        wait_for(lambda: len(published.ids()) >= len(rest), timeout_s=20, what="the rest of the file")
        time.sleep(0.5)
    finally:
        fleet.stop_all()
    assert published.ids() == rest
    assert lookup.asked == [spec, spec]  # asked again after the failure; never played from the start


def test_a_source_that_cannot_resume_never_asks_where_it_stopped(published: Published, video: Path) -> None:
    unpinned = CameraSpec(camera_id="free", url=str(video), fps=10)  # media time 0 is when it opens
    lookup = Lookup([START])
    fleet = CameraFleet(SamplerSettings(fps=10), published, last_published=lookup)
    try:
        fleet.apply("free", unpinned, P0)
        wait_for(lambda: len(published.ids()) == 30, timeout_s=20, what="the whole file")
    finally:
        fleet.stop_all()
    assert lookup.asked == []
