"""CameraFleet driven like the sampler drives it from the `cameras` topic, over real cameras."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest

from facestream.camera.fleet import CameraFleet
from facestream.camera.spec import CameraSpec
from facestream.messages import Frame
from facestream.settings import SamplerSettings
from tests.fixtures.mjpeg import MjpegCamera, metric, wait_for

Start = Callable[..., MjpegCamera]
P0, P1 = ("cameras", 0), ("cameras", 1)
CAMERA_SERIES = (
    "facestream_camera_up",
    "facestream_camera_fps",
    "facestream_camera_frozen",
    "facestream_camera_black",
    "facestream_camera_last_frame_age_seconds",
    "facestream_camera_reconnects_total",
    "facestream_frames_published_total",
)


class Published:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._lock = threading.Lock()

    def __call__(self, frame: Frame, spec: CameraSpec | None = None) -> None:
        with self._lock:
            self.frames.append(frame)

    def of(self, camera_id: str) -> list[Frame]:
        with self._lock:
            return [f for f in self.frames if f.ref.camera_id == camera_id]


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def fleet(published: Published) -> Iterator[CameraFleet]:
    settings = SamplerSettings(fps=10, reconnect_initial_s=0.1, reconnect_max_s=0.4, stall_timeout_s=1.0)
    f = CameraFleet(settings, published)
    yield f
    f.stop_all()


def spec(camera_id: str, url: str, **extra: object) -> CameraSpec:
    return CameraSpec(camera_id=camera_id, url=url, **extra)  # type: ignore[arg-type]


def test_apply_starts_reapply_is_a_no_op_and_a_change_restarts(
    fleet: CameraFleet, published: Published, mjpeg_camera: Start
) -> None:
    camera = mjpeg_camera(fps=20)
    fleet.apply("f-a", spec("f-a", camera.url), P0)
    assert fleet.cameras == ["f-a"]
    wait_for(lambda: len(published.of("f-a")) >= 3, what="frames of f-a")
    fleet.apply("f-a", spec("f-a", camera.url), P0)  # the same record again (a rebalance re-read)
    fleet.apply("f-a", spec("f-a", camera.url), P0)
    assert camera.connections == 1
    fleet.apply("f-a", spec("f-a", camera.url, fps=5), P0)  # changed config
    wait_for(lambda: camera.connections == 2, what="a restart")
    assert fleet.cameras == ["f-a"]
    assert REGISTRY.get_sample_value("facestream_cameras_assigned") == 1.0


@pytest.mark.parametrize("leave", ["tombstone", "disabled"])
def test_a_tombstone_or_disabled_config_stops_the_camera_and_removes_its_series(
    fleet: CameraFleet, published: Published, mjpeg_camera: Start, leave: str
) -> None:
    camera = mjpeg_camera(fps=20)
    camera_id = f"f-{leave}"
    fleet.apply(camera_id, spec(camera_id, camera.url), P0)
    wait_for(lambda: len(published.of(camera_id)) >= 2, what="frames")
    fleet.refresh_metrics()  # what the sampler's loop does every second
    assert all(metric(name, camera_id) is not None for name in CAMERA_SERIES)
    fleet.apply(camera_id, None if leave == "tombstone" else spec(camera_id, camera.url, enabled=False), P0)
    assert fleet.cameras == []
    count = len(published.of(camera_id))
    assert all(metric(name, camera_id) is None for name in CAMERA_SERIES)
    time.sleep(0.5)
    assert camera.connections == 1 and len(published.of(camera_id)) == count  # no reconnect, no frame
    assert REGISTRY.get_sample_value("facestream_cameras_assigned") == 0.0


def test_revoke_stops_only_that_partitions_cameras(
    fleet: CameraFleet, published: Published, mjpeg_camera: Start
) -> None:
    one, two = mjpeg_camera(fps=20), mjpeg_camera(fps=20)
    fleet.apply("f-p0", spec("f-p0", one.url), P0)
    fleet.apply("f-p1", spec("f-p1", two.url), P1)
    wait_for(lambda: bool(published.of("f-p0")) and bool(published.of("f-p1")), what="both cameras")
    fleet.revoke([P0])
    assert fleet.cameras == ["f-p1"]
    assert metric("facestream_camera_up", "f-p0") is None
    before = len(published.of("f-p1"))
    wait_for(lambda: len(published.of("f-p1")) >= before + 3, what="f-p1 to keep going")


def test_a_camera_that_never_connects_does_not_slow_another(
    fleet: CameraFleet, published: Published, mjpeg_camera: Start
) -> None:
    dead, alive = mjpeg_camera(mode="silent"), mjpeg_camera(fps=20)
    fleet.apply("f-dead", spec("f-dead", dead.url), P0)
    fleet.apply("f-alive", spec("f-alive", alive.url), P0)
    wait_for(lambda: metric("facestream_camera_reconnects_total", "f-dead") is not None, what="a failed open")
    # at 10 fps the live camera publishes ~20 frames in 2 s, while the dead one keeps timing out
    wait_for(lambda: len(published.of("f-alive")) >= 15, timeout_s=6, what="the live camera's frames")
    assert published.of("f-dead") == []
    assert metric("facestream_camera_up", "f-dead") == 0.0
    assert metric("facestream_camera_up", "f-alive") == 1.0


def test_credentials_never_reach_frames_logs_or_metrics(
    fleet: CameraFleet,
    published: Published,
    mjpeg_camera: Start,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    good = mjpeg_camera(fps=20, mode="drop", fail_after=4, credentials=("op", "Secr3t"))
    refused = mjpeg_camera(fps=20, credentials=("op", "Secr3t"))
    with caplog.at_level(logging.DEBUG):
        fleet.apply("f-cred", spec("f-cred", good.url), P0)
        fleet.apply("f-wrong", spec("f-wrong", refused.url.replace("Secr3t", "Wr0ngPass")), P1)
        fleet.apply(
            "f-query", spec("f-query", f"http://127.0.0.1:{refused.port}/v.mjpg?user=op&pwd=Qu3ryPw"), P1
        )
        wait_for(lambda: len(published.of("f-cred")) >= 6 and good.connections >= 2, what="a reconnect")
        wait_for(lambda: refused.unauthorised >= 2, what="refused logins")
        exposition = generate_latest(REGISTRY).decode()
        fleet.stop_all()
    out, err = capfd.readouterr()
    assert "reconnecting" in caplog.text and "401" in caplog.text
    for secret in ("Secr3t", "Wr0ngPass", "Qu3ryPw"):
        assert secret not in caplog.text
        assert secret not in out + err
        assert secret not in exposition
    assert {f.ref.source for f in published.frames} == {good.url.replace("op:Secr3t", "***")}
