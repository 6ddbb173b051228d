"""A stage killed after its outputs reached the broker but before its input offsets were
committed: the one crash that at-least-once turns into duplicates downstream.

The detector runs as a real process. A read_uncommitted watcher sees a batch's outputs the
moment the broker has them; the detector is then frozen (SIGSTOP) and, if the group's offset
for that input is not committed yet, it was caught in between: it is killed (SIGKILL) and
started again. Its outputs were in a transaction the replacement aborts, and the replacement
processes the frame again: read_committed, every frame has its face exactly once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from confluent_kafka import Consumer

from facestream import codec
from facestream.imaging import encode_jpeg
from facestream.messages import Frame, FrameRef
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer, client_config
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.integration.processes import services, wait_until
from tests.reliability.chaos import Chaos, service_args

pytestmark = pytest.mark.slow

ATTEMPTS = 25
WANTED_CATCHES = 2


def test_a_stage_killed_between_its_outputs_and_its_commit_duplicates_nothing(
    kafka_topics: KafkaSettings, model_settings: ModelSettings, faces_dir: Path, tmp_path: Path
) -> None:
    settings = kafka_topics
    prefix = settings.topic_prefix
    group, frames_topic = prefix + "facestream-detector", prefix + topics.FRAMES
    image = np.asarray(cv2.imread(str(faces_dir / "probe" / "obama.jpg")), np.uint8)
    jpeg = encode_jpeg(image, 90)
    producer = KafkaProducer(settings)
    watcher = Consumer(
        {
            **client_config(settings),
            "group.id": f"watch-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_uncommitted",  # outputs as soon as the broker has them
            "fetch.wait.max.ms": 10,
        }
    )
    watcher.subscribe([prefix + topics.FACES])

    def uncommitted_frame_seen(frame_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in watcher.consume(100, 0.01):
                if (
                    message.error() is None
                    and codec.FACES.decode(message.value() or b"").ref.frame_id == frame_id
                ):
                    return True
        return False

    args = service_args(settings, model_settings.model_dir, "", tmp_path, tmp_path, 3.0)
    sent: list[str] = []
    caught = 0
    with services(tmp_path) as running:
        chaos = Chaos(running, args)
        chaos.start("detector").wait_ready(120)
        try:
            for attempt in range(ATTEMPTS):
                frame = Frame(
                    FrameRef("gate", f"gate@{attempt}", attempt, "t"), image.shape[1], image.shape[0], jpeg
                )
                producer.produce(frames_topic, codec.FRAMES.encode(frame), key=frame.key)
                producer.flush(15)
                sent.append(frame.ref.frame_id)
                assert uncommitted_frame_seen(frame.ref.frame_id, 60), chaos.current["detector"].tail()
                detector = chaos.current["detector"]
                os.kill(detector.proc.pid, signal.SIGSTOP)
                ends = {p: e for p, e in end_offsets(settings, frames_topic).items() if e > 0}
                if committed_offsets(settings, group, frames_topic) != ends:
                    caught += 1  # outputs out, offsets not committed: the worst moment to die
                    chaos.kill("detector", f"between outputs and commit of {frame.ref.frame_id}")
                    chaos.current["detector"].wait_ready(120)
                    if caught == WANTED_CATCHES:
                        break
                else:
                    os.kill(detector.proc.pid, signal.SIGCONT)
        finally:
            watcher.close()
        assert caught >= 1, (
            f"never caught the detector between its outputs and its commit in {ATTEMPTS} tries"
        )

        def all_committed() -> bool:
            ends = {p: e for p, e in end_offsets(settings, frames_topic).items() if e > 0}
            return committed_offsets(settings, group, frames_topic) == ends

        wait_until(all_committed, 120, "every frame committed", chaos.current["detector"])
        faces = [
            codec.FACES.decode(e.value).face_id
            for e in read_topic(settings, prefix + topics.FACES, len(sent))
        ]
        assert sorted(faces) == sorted(f"{frame_id}/0" for frame_id in sent), chaos.story()
        assert chaos.current["detector"].terminate() == 0
