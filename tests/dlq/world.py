"""What the dead-letter tests share: a producer that reports where each message landed, a collector
that reads topics in the background, real good messages made from the test photos, and a gallery
with one enrolled person for the matcher."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import Producer as CKProducer

from facestream import codec
from facestream.messages import Embedding, Face, Frame, FrameRef
from facestream.settings import KafkaSettings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.transport.base import Envelope
from facestream.transport.kafka import client_config, to_envelope
from facestream.transport.topics import FETCH_MAX_BYTES, MAX_BATCH_BYTES, MAX_RECORD_BYTES
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.integration.processes import cli


@dataclass(frozen=True)
class Landed:
    topic: str
    partition: int
    offset: int


def produce(settings: KafkaSettings, topic: str, value: bytes, key: bytes | None) -> Landed:
    """One message, flushed; where it landed (what the DLQ headers must point back to)."""
    landed = produce_foreign(settings, topic, value, key, max_bytes=MAX_RECORD_BYTES)
    assert landed is not None
    return landed


def produce_foreign(
    settings: KafkaSettings,
    topic: str,
    value: bytes,
    key: bytes | None,
    *,
    max_bytes: int = 2 * MAX_BATCH_BYTES,
) -> Landed | None:
    """One message from a producer that is not facestream's (its own message.max.bytes), flushed;
    where it landed, or None when the broker refused it as too large."""
    producer = CKProducer({**client_config(settings), "message.max.bytes": max_bytes, "acks": "all"})
    landed: list[Landed] = []
    errors: list[str] = []
    too_large: list[bool] = []

    def report(error: object, message: object) -> None:
        if error is not None:
            errors.append(str(error))
            too_large.append(error.name() == "MSG_SIZE_TOO_LARGE")  # type: ignore[attr-defined]
        else:
            landed.append(Landed(message.topic(), message.partition(), message.offset()))  # type: ignore[attr-defined]

    producer.produce(topic, value=value, key=key, on_delivery=report)
    assert producer.flush(60) == 0
    if too_large == [True]:
        return None
    assert not errors, errors
    return landed[0]


class Collector:
    """Reads topics from their start in a background thread and keeps every message."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str]) -> None:
        self._consumer = CKConsumer(
            {
                **client_config(settings),
                "group.id": f"dlq-collector-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.message.max.bytes": MAX_BATCH_BYTES,
                "fetch.max.bytes": FETCH_MAX_BYTES,
            }
        )
        self._consumer.subscribe(list(topics))
        self._lock = threading.Lock()
        self._seen: dict[str, list[Envelope]] = {t: [] for t in topics}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlq-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(200, 0.2):
                    if message.error() is None:
                        env = to_envelope(message)
                        with self._lock:
                            self._seen.setdefault(env.topic, []).append(env)
        finally:
            self._consumer.close()

    def messages(self, topic: str) -> list[Envelope]:
        with self._lock:
            return list(self._seen.get(topic, []))

    def wait_for(
        self, topic: str, match: Callable[[Envelope], bool], what: str, timeout_s: float = 90
    ) -> Envelope:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [e for e in self.messages(topic) if match(e)]
            if found:
                assert len(found) == 1, f"{what}: {len(found)} messages, expected one"
                return found[0]
            assert time.monotonic() < deadline, f"timed out waiting for {what} on {topic}"
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def headers(env: Envelope) -> dict[str, str]:
    return {k: v.decode() for k, v in env.headers}


def from_offset(landed: Landed) -> Callable[[Envelope], bool]:
    """A dead letter whose origin headers point at `landed`."""

    def match(env: Envelope) -> bool:
        h = headers(env)
        return (
            h.get("fs.dlq.topic") == landed.topic
            and h.get("fs.dlq.partition") == str(landed.partition)
            and h.get("fs.dlq.offset") == str(landed.offset)
        )

    return match


# -- good messages, made by the real models from a real photo -------------------------------------


def photo(faces_dir: Path, width: int = 640) -> np.ndarray:
    image = cv2.imread(str(faces_dir / "probe" / "obama.jpg"), cv2.IMREAD_COLOR)
    assert image is not None
    return np.asarray(cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1]))), np.uint8)


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf.tobytes())


def good_frame(faces_dir: Path, camera: str) -> Frame:
    """A frame with Obama in it, unique by its capture time."""
    at = int(time.time() * 1000)
    image = photo(faces_dir)
    ref = FrameRef(camera, f"{camera}@{at}", at, "test")
    return Frame(ref, image.shape[1], image.shape[0], jpeg(image))


def good_face(faces_dir: Path, finder: FaceFinder, camera: str) -> Face:
    faces = DetectStage(finder, max_frame_pixels=10_000_000, thumbnail_px=64).faces_in(
        good_frame(faces_dir, camera)
    )
    assert len(faces) == 1
    return faces[0]


def good_embedding(faces_dir: Path, finder: FaceFinder, embedder: FaceEmbedder, camera: str) -> Embedding:
    [outcome] = EmbedStage(embedder).process([good_face(faces_dir, finder, camera)])
    assert isinstance(outcome, list)
    return outcome[0]


def frame_id_of(
    c: codec.Codec[Frame] | codec.Codec[Face] | codec.Codec[Embedding] | codec.Codec[object],
) -> Callable[[Envelope], str]:
    return lambda env: str(c.decode(env.value).ref.frame_id)  # type: ignore[attr-defined]


# -- a gallery with Obama enrolled under an authorisation -------------------------------------------


def enrolled_gallery(gallery: Path, model_dir: Path, faces_dir: Path) -> None:
    common = ["--gallery", str(gallery), "--actor", "pytest"]
    grant = "--case DLQ-1 --basis test --purpose wanted --issued-by pytest --valid-from 2000-01-01T00:00:00Z"
    granted = cli("authorisation", "grant", *common, *grant.split(), "--valid-until", "2099-01-01T00:00:00Z")
    authorisation = json.loads(granted)["id"]
    photos = [str(p) for p in sorted((faces_dir / "enroll").glob("obama_*.jpg"))]
    cli(
        "gallery", "enroll", *common, "--identity", "obama", "--authorisation", authorisation,
        "--model-dir", str(model_dir), *photos,
    )  # fmt: skip
