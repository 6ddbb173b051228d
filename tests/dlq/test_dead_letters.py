"""Every kind of bad input, through the running services on the real broker, lands in the stage's
dead-letter topic — the original bytes, with headers saying why, which stage, and where it came
from — is counted in `facestream_dlq_messages_total{stage,reason}`, and the good message right
behind it (same key, so same partition, so later) is still processed.

One deployment serves the module: detector, embedder and matcher (Milvus Lite gallery with
Obama enrolled) and a frame-sampler, each a real process, on topics of their own.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import fastavro
import numpy as np
import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import ALIGNED_BYTES, Embedding, Face, Frame, FrameRef
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.base import Envelope
from facestream.transport.kafka import ensure_topics
from facestream.transport.topics import catalogue
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.dlq.world import (
    Collector,
    Landed,
    enrolled_gallery,
    from_offset,
    good_embedding,
    good_face,
    good_frame,
    headers,
    jpeg,
    photo,
    produce,
)
from tests.fixtures.kafka import TEST_PARTITIONS, delete_topics
from tests.integration.processes import ServiceProcess, kafka_args, services

pytestmark = pytest.mark.slow

MAX_FRAME_PIXELS = 4_000_000
STAGES = ("detector", "embedder", "matcher", "frame-sampler")
INPUT = {"detector": topics.FRAMES, "embedder": topics.FACES, "matcher": topics.EMBEDDINGS}
OUTPUT = {"detector": topics.FACES, "embedder": topics.EMBEDDINGS, "matcher": topics.HITS}
CODEC: dict[str, codec.Codec[Any]] = {
    "detector": codec.FRAMES,
    "embedder": codec.FACES,
    "matcher": codec.EMBEDDINGS,
}
OUTPUT_CODEC: dict[str, codec.Codec[Any]] = {
    "detector": codec.FACES,
    "embedder": codec.EMBEDDINGS,
    "matcher": codec.HITS,
}


@dataclass
class Deployment:
    kafka: KafkaSettings
    procs: dict[str, ServiceProcess]
    seen: Collector
    faces_dir: Path
    finder: FaceFinder
    embedder: FaceEmbedder

    def topic(self, name: str) -> str:
        return self.kafka.topic_prefix + name

    def dlq_count(self, stage: str, reason: str) -> float:
        return self.procs[stage].metric("facestream_dlq_messages_total", {"stage": stage, "reason": reason})


@pytest.fixture(scope="module")
def deployment(
    kafka_broker: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
    model_settings: ModelSettings,
    faces_dir: Path,
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("dlq")
    kafka = kafka_broker.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:12]}."})
    ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions=TEST_PARTITIONS))
    gallery = root / "gallery"
    enrolled_gallery(gallery, model_settings.model_dir, faces_dir)
    model = ["--model-dir", str(model_settings.model_dir), "--execution-provider", "cpu"]

    def args(stage: str) -> list[str]:
        return [*kafka_args(kafka), "--metrics-port", "0", "--group-id", f"{kafka.topic_prefix}{stage}"]

    watched = [kafka.topic_prefix + t for t in (*OUTPUT.values(), topics.FRAMES)]
    watched += [kafka.topic_prefix + topics.dlq(s) for s in STAGES]
    seen = Collector(kafka, watched)
    try:
        with services(root) as running:
            procs = {
                # Every good frame here shows the same face on the same camera seconds apart, which
                # a face tracker forwards once (docs/tracking.md); each test must see its own through.
                "detector": running.start(
                    "detector",
                    *args("detector"),
                    *model,
                    "--max-frame-pixels",
                    str(MAX_FRAME_PIXELS),
                    "--no-track-faces",
                ),
                "embedder": running.start("embedder", *args("embedder"), *model),
                "matcher": running.start(
                    "matcher",
                    *args("matcher"),
                    "--gallery",
                    str(gallery),
                    "--episodes-data-dir",
                    str(root / "faust"),
                ),
                "frame-sampler": running.start("frame-sampler", *args("frame-sampler")),
            }
            for proc in procs.values():
                proc.wait_ready(120)
            yield Deployment(kafka, procs, seen, faces_dir, finder, embedder)
            for proc in procs.values():
                assert proc.running, f"{proc.name} stopped:\n{proc.tail()}"
    finally:
        seen.close()
        delete_topics(kafka, kafka.topic_prefix)


def dead_letter_then_good(
    d: Deployment, stage: str, bad: bytes, reason: str, good: Frame | Face | Embedding
) -> None:
    """Send `bad` then `good` with one key; the bad one must be dead-lettered, the good one processed."""
    before = d.dlq_count(stage, reason)
    key = good.key
    landed = produce(d.kafka, d.topic(INPUT[stage]), bad, key)
    produce(d.kafka, d.topic(INPUT[stage]), CODEC[stage].encode(good), key)

    letter = d.seen.wait_for(d.topic(topics.dlq(stage)), from_offset(landed), f"the dead letter of {reason}")
    assert_dead_letter(letter, stage, reason, landed, bad)
    d.seen.wait_for(
        d.topic(OUTPUT[stage]),
        lambda env: frame_id(OUTPUT_CODEC[stage], env) == good.ref.frame_id,
        f"the output of the good message after {reason}",
    )
    assert d.dlq_count(stage, reason) == before + 1
    assert d.procs[stage].running


def frame_id(c: codec.Codec[Any], env: Envelope) -> str:
    """The frame id of a message, or "" for the bad ones the tests themselves put on the topics."""
    try:
        return str(c.decode(env.value).ref.frame_id)
    except InvalidMessage:
        return ""


def assert_dead_letter(letter: Envelope, stage: str, reason: str, landed: Landed, bad: bytes) -> None:
    h = headers(letter)
    assert letter.value == bad  # the original bytes, to inspect and replay
    assert h["fs.dlq.reason"] == reason, h
    assert h["fs.dlq.stage"] == stage
    assert (h["fs.dlq.topic"], h["fs.dlq.partition"], h["fs.dlq.offset"]) == (
        landed.topic,
        str(landed.partition),
        str(landed.offset),
    )
    assert h["fs.dlq.detail"]  # the human explanation


# -- the detector: JPEGs and frames ------------------------------------------------------------------


def frame_with(d: Deployment, picture: bytes) -> bytes:
    frame = good_frame(d.faces_dir, "cam-bad")
    return codec.FRAMES.encode(Frame(frame.ref, frame.width, frame.height, picture))


def noise_jpeg(width: int, height: int, quality: int) -> bytes:
    rng = np.random.default_rng(5)
    return jpeg(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), quality)


def absurd_header() -> bytes:
    """A few hundred bytes whose frame header claims 60000 x 60000 pixels: a decompression bomb."""
    body = struct.pack(">BHHB", 8, 60000, 60000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(body) + 2) + body + bytes(300) + b"\xff\xd9"


JPEG_KINDS: dict[str, tuple[Callable[[Deployment], bytes], str]] = {
    "corrupt": (lambda d: b"\xff\xd8" + np.random.default_rng(1).bytes(5000), "bad_jpeg"),
    "not_a_jpeg": (lambda d: b"GIF89a" + bytes(100), "not_jpeg"),
    "empty": (lambda d: b"", "not_jpeg"),
    "truncated": (lambda d: jpeg(photo(d.faces_dir))[:6000], "bad_jpeg"),
    "gigantic": (lambda d: noise_jpeg(3200, 2400, 85), "too_large"),
    "header_claims_60000x60000": (lambda d: absurd_header(), "too_large"),
    "valid_but_beyond_max_frame_pixels": (lambda d: jpeg(photo(d.faces_dir, 3000)), "too_large"),
}


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
def test_bad_jpegs_are_dead_lettered_by_the_detector(deployment: Deployment, kind: str) -> None:
    make, reason = JPEG_KINDS[kind]
    picture = make(deployment)
    if kind == "gigantic":
        assert len(picture) > 5_000_000
    if kind == "valid_but_beyond_max_frame_pixels":
        image = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] * image.shape[1] > MAX_FRAME_PIXELS
    good = good_frame(deployment.faces_dir, "cam-bad")
    dead_letter_then_good(deployment, "detector", frame_with(deployment, picture), reason, good)


def test_a_frame_dated_2096_is_dead_lettered_by_the_detector(deployment: Deployment) -> None:
    """A capture time far in the future (a camera clock far off, a forged record) would open an episode
    in 2096 and hide that person's later genuine hits. The detector, started without
    --max-future-skew-s as the chart starts it, dead-letters it undecoded (`future_timestamp`, the
    code's default 300 s) and processes the genuine frame behind it."""
    d = deployment
    good = good_frame(d.faces_dir, "cam-future")
    at = int(datetime(2096, 1, 1, tzinfo=UTC).timestamp() * 1000)
    ref = FrameRef(good.ref.camera_id, f"{good.ref.camera_id}@{at}", at, good.ref.source)
    bad = codec.FRAMES.encode(Frame(ref, good.width, good.height, good.jpeg))  # a real face, a bad time
    dead_letter_then_good(d, "detector", bad, "future_timestamp", good)
    letter = d.seen.wait_for(
        d.topic(topics.dlq("detector")),
        lambda env: headers(env).get("fs.dlq.reason") == "future_timestamp" and env.value == bad,
        "the dead letter of the 2096 frame",
    )
    assert "at most 300 s" in headers(letter)["fs.dlq.detail"], headers(letter)
    assert letter.key == good.key
    faces = d.seen.messages(d.topic(topics.FACES))
    assert not [e for e in faces if frame_id(codec.FACES, e) == ref.frame_id], "the 2096 frame was processed"


# -- the wire format, on every consuming stage ---------------------------------------------------------


def good_for(d: Deployment, stage: str) -> Frame | Face | Embedding:
    camera = f"cam-{stage}"
    if stage == "detector":
        return good_frame(d.faces_dir, camera)
    if stage == "embedder":
        return good_face(d.faces_dir, d.finder, camera)
    return good_embedding(d.faces_dir, d.finder, d.embedder, camera)


WIRE_KINDS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "unknown_schema_id": (lambda valid: b"\x00" + struct.pack(">I", 999) + valid[5:], "unknown_schema"),
    "schema_of_another_subject": (lambda valid: b"\x00" + struct.pack(">I", 4) + valid[5:], "unknown_schema"),
    "truncated_avro": (lambda valid: valid[: len(valid) * 2 // 3], "undecodable"),
    "wrong_magic_byte": (lambda valid: b"\x01" + valid[1:], "bad_magic"),
    "shorter_than_the_header": (lambda valid: valid[:3], "truncated"),
}


@pytest.mark.parametrize("stage", sorted(CODEC))
@pytest.mark.parametrize("kind", sorted(WIRE_KINDS))
def test_bad_wire_messages_are_dead_lettered(deployment: Deployment, stage: str, kind: str) -> None:
    spoil, reason = WIRE_KINDS[kind]
    valid = CODEC[stage].encode(good_for(deployment, stage))
    dead_letter_then_good(deployment, stage, spoil(valid), reason, good_for(deployment, stage))


# -- the embedder and the matcher: crops and vectors ---------------------------------------------------


def test_a_wrong_size_crop_is_dead_lettered_by_the_embedder(deployment: Deployment) -> None:
    face = good_face(deployment.faces_dir, deployment.finder, "cam-crop")
    bad = Face(face.ref, face.face_index, face.bbox, face.landmarks, face.quality, bytes(112 * 112), b"")
    assert len(bad.aligned) != ALIGNED_BYTES
    dead_letter_then_good(deployment, "embedder", codec.FACES.encode(bad), "bad_crop", face)


def embedding_bytes(template: Embedding, vector: list[float]) -> bytes:
    """An embeddings message carrying exactly `vector` (the codec refuses to write a bad one)."""
    record = codec._embedding_record(template)
    out = io.BytesIO()
    out.write(codec.HEADER.pack(codec.MAGIC, codec.BUILTIN.id_of(codec.EMBEDDINGS.path)))
    fastavro.schemaless_writer(out, codec.BUILTIN.parsed(codec.EMBEDDINGS.path), {**record, "vector": vector})
    return out.getvalue()


def _unit(n: int) -> list[float]:
    return [float(x) for x in np.full(n, n**-0.5, np.float32)]


VECTOR_KINDS: dict[str, Callable[[Embedding], list[float]]] = {
    "nan": lambda e: [float("nan"), *e.vector.tolist()[1:]],
    "infinite": lambda e: [float("inf"), *e.vector.tolist()[1:]],
    "not_unit_length": lambda e: (e.vector * 3).tolist(),
    "wrong_length_but_unit": lambda e: _unit(128),
    "empty": lambda e: [],
}


@pytest.mark.parametrize("kind", sorted(VECTOR_KINDS))
def test_bad_vectors_are_dead_lettered_by_the_matcher(deployment: Deployment, kind: str) -> None:
    good = good_embedding(deployment.faces_dir, deployment.finder, deployment.embedder, "cam-vec")
    bad = embedding_bytes(good, VECTOR_KINDS[kind](good))
    dead_letter_then_good(deployment, "matcher", bad, "bad_vector", good)


# -- the frame-sampler: camera configs -----------------------------------------------------------------


CONFIG_KINDS: dict[str, Callable[[str, str], bytes]] = {
    "bad_json": lambda camera, url: b'{"camera_id": "' + camera.encode() + b'", "url": ',
    "unknown_key": lambda camera, url: json.dumps({"camera_id": camera, "url": url, "fsp": 5}).encode(),
    "key_differs_from_camera_id": lambda camera, url: json.dumps(
        {"camera_id": "someone-else", "url": url}
    ).encode(),
    "out_of_range_fps": lambda camera, url: json.dumps(
        {"camera_id": camera, "url": url, "fps": 1000}
    ).encode(),
    "not_an_object": lambda camera, url: b"[1, 2, 3]",
}


@pytest.mark.parametrize("kind", sorted(CONFIG_KINDS))
def test_bad_camera_configs_are_dead_lettered_by_the_sampler(
    deployment: Deployment, kind: str, tmp_path: Path
) -> None:
    d = deployment
    still = tmp_path / "still.jpg"
    still.write_bytes(jpeg(photo(d.faces_dir, 320)))
    camera = f"cfg-{kind.replace('_', '-')}"
    before = d.dlq_count("frame-sampler", "bad_camera_config")
    cameras = d.topic(topics.CAMERAS)
    landed = produce(d.kafka, cameras, CONFIG_KINDS[kind](camera, str(still)), camera.encode())
    good = json.dumps({"camera_id": camera, "url": str(still)}).encode()
    produce(d.kafka, cameras, good, camera.encode())

    bad = CONFIG_KINDS[kind](camera, str(still))
    letter = d.seen.wait_for(
        d.topic(topics.dlq("frame-sampler")), from_offset(landed), f"the dead letter of {kind}"
    )
    assert_dead_letter(letter, "frame-sampler", "bad_camera_config", landed, bad)
    assert letter.key == camera.encode()
    d.seen.wait_for(
        d.topic(topics.FRAMES),
        lambda env: frame_id(codec.FRAMES, env).startswith(f"{camera}@"),
        "a frame of the good config that followed",
    )
    assert d.dlq_count("frame-sampler", "bad_camera_config") == before + 1
    # the config topic is compacted and never committed: leave no camera running for the next test
    produce(d.kafka, cameras, b"", camera.encode())
