"""The real `facestream frame-sampler` process on the real broker: killed mid-file and started
again it goes on where it stopped (each frame of the file in `frames` once, where every restart
used to publish the whole file again), and a frame Kafka refuses for its size is dropped and
counted while the camera, and every other, goes on (it used to fail the camera's read and
reconnect it with backoff, for ever)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from facestream import codec
from facestream.camera.sources import VideoFile
from facestream.camera.spec import CameraSpec
from facestream.sample import make_camera_video
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from facestream.transport.topics import MAX_RECORD_BYTES
from tests.fixtures.kafka import end_offsets, read_topic
from tests.integration.processes import kafka_args, services, wait_until

pytestmark = pytest.mark.slow

START = 1_790_000_000_000


@pytest.fixture
def kafka(kafka_topics: KafkaSettings) -> KafkaSettings:
    """A prefix of this test's own, with every catalogue topic (tests/fixtures/kafka.py)."""
    return kafka_topics


def put_cameras(settings: KafkaSettings, configs: list[dict[str, object]]) -> None:
    producer = KafkaProducer(settings)
    for config in configs:
        producer.produce(
            settings.topic_prefix + topics.CAMERAS,
            json.dumps(config).encode(),
            key=str(config["camera_id"]).encode(),
        )
    producer.flush(30)


def sampler_args(settings: KafkaSettings, *extra: str) -> list[str]:
    return [
        *kafka_args(settings),
        "--metrics-port",
        "0",
        "--group-id",
        settings.topic_prefix + "sampler",
        *extra,
    ]


def published_ids(settings: KafkaSettings) -> list[str]:
    topic = settings.topic_prefix + topics.FRAMES
    count = sum(end_offsets(settings, topic).values())
    return [codec.FRAMES.decode(e.value).ref.frame_id for e in read_topic(settings, topic, count, 30)]


def test_a_sampler_killed_mid_file_and_started_again_publishes_each_frame_once(
    kafka: KafkaSettings, faces_dir: Path, tmp_path: Path
) -> None:
    photos = sorted((faces_dir / "enroll").glob("*.jpg"))[:3]
    video = make_camera_video(photos, tmp_path / "gate.mp4", size=(160, 120), fps=10.0, seconds_each=2.0)
    spec = CameraSpec(camera_id="gate", url=str(video), fps=5, start_at_ms=START)
    want: list[str] = []
    source = VideoFile(spec, 5)
    source.open()
    while (captured := source.read()) is not None:
        want.append(f"gate@{captured.captured_at_ms}")
    source.close()
    assert len(want) == 30
    put_cameras(kafka, [spec.model_dump(exclude_none=True)])
    frames = kafka.topic_prefix + topics.FRAMES

    args = sampler_args(kafka, "--realtime-files")  # 6 s of video: killed in the middle
    with services(tmp_path) as running:
        first = running.start("frame-sampler", *args)
        wait_until(lambda: sum(end_offsets(kafka, frames).values()) >= 8, 60, "the first frames", first)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        killed_after = sum(end_offsets(kafka, frames).values())
        assert killed_after < len(want), "the file ended before the kill: the test shows nothing"
        second = running.start("frame-sampler", *args)
        wait_until(lambda: sum(end_offsets(kafka, frames).values()) >= len(want), 60, "the rest", second)
        wait_until(lambda: "camera gate started" in second.log(), 10, "the camera's start", second)
        assert second.terminate() == 0
        resumed = "goes on after its frame of" in second.log()
    got = published_ids(kafka)
    assert sorted(got) == sorted(want), f"{len(got)} frames published for the file's {len(want)}"
    assert resumed, "the restarted sampler did not say where it went on from"


def test_a_frame_over_the_record_limit_is_dropped_and_counted_and_the_cameras_go_on(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)  # JPEG q100: ~12 MB
    huge, small = tmp_path / "huge.png", tmp_path / "small.png"
    assert cv2.imwrite(str(huge), noise)
    assert cv2.imwrite(str(small), noise[:120, :160])
    ok, encoded = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok and len(encoded) > MAX_RECORD_BYTES, "the big frame would fit: the test shows nothing"
    put_cameras(
        kafka,
        [{"camera_id": "huge", "url": str(huge)}, {"camera_id": "small", "url": str(small)}],
    )
    frames = kafka.topic_prefix + topics.FRAMES
    args = sampler_args(kafka, "--max-frame-width", "4096", "--jpeg-quality", "100")
    with services(tmp_path) as running:
        sampler = running.start("frame-sampler", *args)
        wait_until(
            lambda: sum(end_offsets(kafka, frames).values()) >= 1, 60, "the small camera's frame", sampler
        )
        wait_until(
            lambda: (
                sampler.metric("facestream_stage_errors_total", {"stage": "frame-sampler", "kind": "refused"})
                >= 1
            ),
            60,
            "the refusal counted",
            sampler,
        )
        assert sampler.running and sampler.ready()
        assert sampler.metric("facestream_camera_reconnects_total", {"camera": "huge"}) == 0
        assert sampler.metric("facestream_frames_published_total", {"camera": "huge"}) == 0
        log = sampler.log()
        assert sampler.terminate() == 0
    assert log.count("refused by Kafka") == 1, log
    assert published_ids(kafka) == [f"small@{int(small.stat().st_mtime * 1000)}"]
