"""One bad camera never slows or stops the others, proved on the real `facestream frame-sampler`
process and the real broker: beside cameras that drop, stall, send garbage, refuse, never answer,
never accept a connection or do not exist, a good camera's frames keep reaching `frames` at its
fps, without a gap, while every bad camera is retried with backoff.

(The sources and the worker are tested piece by piece in the other modules here; this is the
whole sampler, with all of them at once, as deployed.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer as CKProducer

from facestream import codec
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config
from tests.fixtures.kafka import read_topic
from tests.fixtures.mjpeg import MjpegCamera, free_port
from tests.integration.processes import kafka_args, services, wait_until

pytestmark = pytest.mark.slow

GOOD_FPS = 5.0
STALL_TIMEOUT_S = 3.0
"""Long enough that a bad camera able to hold up the good one would leave a gap of seconds."""
WINDOW_S = 8.0


@pytest.fixture
def kafka(kafka_topics: KafkaSettings) -> KafkaSettings:
    """A prefix of this test's own, with every catalogue topic (tests/fixtures/kafka.py)."""
    return kafka_topics


def test_a_good_camera_keeps_its_fps_beside_every_kind_of_bad_camera(
    kafka: KafkaSettings, mjpeg_camera: Callable[..., MjpegCamera], tmp_path: Path
) -> None:
    good = mjpeg_camera(fps=20)
    bad = {
        "bad-drop": mjpeg_camera(fps=20, mode="drop", fail_after=3).url,
        "bad-stall": mjpeg_camera(fps=20, mode="stall", fail_after=3).url,
        "bad-garbage": mjpeg_camera(fps=20, mode="garbage").url,
        "bad-silent": mjpeg_camera(mode="silent").url,
        "bad-refuse": mjpeg_camera(mode="refuse").url,
        "bad-no-listener": f"http://127.0.0.1:{free_port()}/video.mjpg",
        "bad-rtsp-no-listener": f"rtsp://127.0.0.1:{free_port()}/live",
        "bad-missing-file": str(tmp_path / "no-such-video.mp4"),
    }
    cameras = {"good": good.url, **bad}
    producer = CKProducer(client_config(kafka))
    for camera_id, url in cameras.items():
        config = {"camera_id": camera_id, "url": url, "fps": GOOD_FPS}
        producer.produce(kafka.topic_prefix + topics.CAMERAS, json.dumps(config).encode(), camera_id.encode())
    assert producer.flush(30) == 0

    sampler_args = [
        *kafka_args(kafka),
        "--metrics-port",
        "0",
        "--group-id",
        kafka.topic_prefix + "sampler",
        "--stall-timeout-s",
        str(STALL_TIMEOUT_S),
        "--reconnect-initial-s",
        "0.2",
        "--reconnect-max-s",
        "1.6",
    ]
    with services(tmp_path) as running:
        sampler = running.start("frame-sampler", *sampler_args)
        wait_until(
            lambda: sampler.metric("facestream_cameras_assigned") == len(cameras), 60, "every camera", sampler
        )
        wait_until(
            lambda: sampler.metric("facestream_frames_published_total", {"camera": "good"}) >= 3,
            30,
            "the good camera's first frames",
            sampler,
        )
        # every bad camera has failed at least twice: the window below is spent among retries
        wait_until(
            lambda: all(
                sampler.metric("facestream_camera_reconnects_total", {"camera": c}) >= 2
                for c in bad
                if c != "bad-garbage"
            ),
            60,
            "the bad cameras to be retried",
            sampler,
        )
        started_ms = int(time.time() * 1000)
        time.sleep(WINDOW_S)
        ended_ms = int(time.time() * 1000)

        reconnects = {c: sampler.metric("facestream_camera_reconnects_total", {"camera": c}) for c in bad}
        up = {c: sampler.metric("facestream_camera_up", {"camera": c}) for c in cameras}
        assert sampler.running
        assert sampler.terminate() == 0, sampler.tail()

    frames = [
        codec.FRAMES.decode(e.value) for e in read_topic(kafka, kafka.topic_prefix + topics.FRAMES, 1, 30)
    ]
    taken = sorted(
        f.ref.captured_at_ms
        for f in frames
        if f.ref.camera_id == "good" and started_ms <= f.ref.captured_at_ms <= ended_ms
    )
    expected = GOOD_FPS * WINDOW_S
    assert len(taken) >= 0.75 * expected, f"{len(taken)} frames in {WINDOW_S}s at {GOOD_FPS} fps"
    gaps = np.diff([started_ms, *taken, ended_ms]) / 1000
    assert gaps.max() < STALL_TIMEOUT_S / 2, f"the good camera paused {gaps.max():.2f}s"
    # the bad ones were retried (with backoff: at most a handful of attempts each, not a busy loop)
    assert all(1 <= n <= 40 for c, n in reconnects.items() if c != "bad-garbage"), reconnects
    assert up["good"] == 1.0
    assert all(up[c] == 0.0 for c in ("bad-silent", "bad-refuse", "bad-no-listener", "bad-missing-file")), up
    # garbage between frames is skipped, not fatal: its good frames still arrive
    assert any(f.ref.camera_id == "bad-garbage" for f in frames)
    assert not any(f.ref.camera_id in {"bad-silent", "bad-refuse", "bad-no-listener"} for f in frames)
