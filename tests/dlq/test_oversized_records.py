"""Records around the size limits, through the real detector and embedder processes on the real broker:
the stage keeps running, the record is in its dead-letter topic with its reason and origin headers
(its payload cut when it cannot be carried whole), and the good record right behind it (same key,
so same partition, so later) is processed.

The issue this answers: a frame just over the producer's limit but within the broker's made the
detector fail while dead-lettering it (MSG_SIZE_TOO_LARGE), on every restart. Sizes are drawn just
under, at and over the producer's limit (`MAX_RECORD_BYTES`) and the broker's (`MAX_BATCH_BYTES`);
for the embedder also around the `embeddings` topic's max.message.bytes, which this deployment sets
lower (as an operator might): a valid face with a huge thumbnail then makes an output Kafka refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from hypothesis import example, given
from hypothesis import strategies as st

from facestream import codec
from facestream.messages import Embedding, Face, Frame
from facestream.runtime.runner import OUTPUT_TOO_LARGE, RECORD_TOO_LARGE
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.base import Envelope
from facestream.transport.kafka import client_config, ensure_topics
from facestream.transport.topics import DEAD_LETTER_KEEP_BYTES, MAX_BATCH_BYTES, MAX_RECORD_BYTES, catalogue
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.dlq.world import Collector, Landed, from_offset, good_face, good_frame, headers, produce_foreign
from tests.fixtures.kafka import TEST_PARTITIONS, delete_topics
from tests.fuzz.strategies import fuzz
from tests.integration.processes import ServiceProcess, kafka_args, services

pytestmark = pytest.mark.slow

P = MAX_RECORD_BYTES
B = MAX_BATCH_BYTES
EMBEDDINGS_LIMIT = 4_000_000
"""The `embeddings` topic's max.message.bytes in this deployment (the catalogue's is B)."""
LETTER_HEADERS_MIN = 150
"""The least a dead letter's headers and framing add (reason, stage, origin topic, offset, time)."""
LETTER_HEADERS_MAX = 5_000
"""The most they add (the detail is cut at 500 bytes)."""

# Sizes (key + value of the bad record) whose outcome is certain: a whole dead letter fits, or it
# cannot; over the producer's limit; within the broker's; over it. The broker's own framing (about
# 80 bytes) decides the last few hundred bytes below B, which are left out.
sizes = st.one_of(
    st.integers(P - 50_000, P - LETTER_HEADERS_MAX),
    st.integers(P - LETTER_HEADERS_MIN, P),
    st.integers(P + 1, P + 1_000),
    st.integers(B - 1_000, B - 300),
    st.integers(B, B + 1_000),
)


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


@pytest.fixture(scope="module")
def deployment(
    kafka_broker: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
    model_settings: ModelSettings,
    faces_dir: Path,
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("oversized")
    kafka = kafka_broker.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:12]}."})
    ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions=TEST_PARTITIONS))
    admin = AdminClient(client_config(kafka))
    lowered = ConfigResource(
        "TOPIC",
        kafka.topic_prefix + topics.EMBEDDINGS,
        incremental_configs=[
            ConfigEntry(
                "max.message.bytes", str(EMBEDDINGS_LIMIT), incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    for future in admin.incremental_alter_configs([lowered]).values():
        future.result(timeout=30)
    model = ["--model-dir", str(model_settings.model_dir), "--execution-provider", "cpu"]

    def args(stage: str) -> list[str]:
        return [*kafka_args(kafka), "--metrics-port", "0", "--group-id", f"{kafka.topic_prefix}{stage}"]

    watched = [kafka.topic_prefix + t for t in (topics.FACES, topics.EMBEDDINGS)]
    watched += [kafka.topic_prefix + topics.dlq(s) for s in ("detector", "embedder")]
    seen = Collector(kafka, watched)
    try:
        with services(root) as running:
            procs = {
                "detector": running.start("detector", *args("detector"), *model),
                "embedder": running.start("embedder", *args("embedder"), *model),
            }
            for proc in procs.values():
                proc.wait_ready(180)
            yield Deployment(kafka, procs, seen, faces_dir, finder, embedder)
            for proc in procs.values():
                assert proc.running, f"{proc.name} stopped:\n{proc.tail()}"
    finally:
        seen.close()
        delete_topics(kafka, kafka.topic_prefix)


def sized(build: object, target: int, key: bytes) -> bytes:
    """The record `build(n)` encodes to, with `n` chosen so that key + value is `target` bytes."""
    assert callable(build)
    n = max(0, target - len(key) - len(build(0)))
    for _ in range(4):  # Avro's length prefix may grow by a byte or two
        value: bytes = build(n)
        n += target - len(key) - len(value)
    assert len(key) + len(value) == target
    return value


def frame_of(d: Deployment, camera: str, size: int) -> tuple[bytes, Frame]:
    """A frame record of `size` bytes whose picture is no JPEG (its start marker, then zeros: no frame
    header), and a good frame behind it."""
    good = good_frame(d.faces_dir, camera)

    def build(n: int) -> bytes:
        return codec.FRAMES.encode(Frame(good.ref, good.width, good.height, b"\xff\xd8" + bytes(n)))

    return sized(build, size, good.key), good


def face_of(d: Deployment, camera: str, size: int) -> tuple[bytes, Face]:
    """A valid face record of `size` bytes (its thumbnail made huge), and a good face behind it."""
    good = good_face(d.faces_dir, d.finder, camera)

    def build(n: int) -> bytes:
        return codec.FACES.encode(
            Face(good.ref, 7, good.bbox, good.landmarks, good.quality, good.aligned, b"\xff\xd8" + bytes(n))
        )

    return sized(build, size, good.key), good


def output_size(d: Deployment, face: bytes) -> int:
    """Key + value of the embedding the embedder makes of `face`."""
    f = codec.FACES.decode(face)
    vector = np.full(512, 512**-0.5, np.float32)
    e = Embedding(f.ref, f.face_index, f.bbox, f.quality, d.embedder.model_id, vector, f.thumbnail_jpeg)
    return len(e.key) + len(codec.EMBEDDINGS.encode(e))


def bad_then_good(d: Deployment, stage: str, bad: bytes, good: bytes, key: bytes) -> Landed | None:
    source = d.topic(topics.FRAMES if stage == "detector" else topics.FACES)
    landed = produce_foreign(d.kafka, source, bad, key)
    produce_foreign(d.kafka, source, good, key)
    return landed


def assert_letter(d: Deployment, stage: str, landed: Landed, bad: bytes, reason: str, whole: bool) -> None:
    letter = d.seen.wait_for(d.topic(topics.dlq(stage)), from_offset(landed), f"the dead letter of {reason}")
    h = headers(letter)
    assert (h["fs.dlq.reason"], h["fs.dlq.stage"]) == (reason, stage), h
    if whole:
        assert "fs.dlq.payload" not in h
        assert letter.value == bad
    else:  # cut, and found again in the source topic by its origin headers
        assert (h["fs.dlq.payload"], h["fs.dlq.payload_bytes"]) == ("truncated", str(len(bad)))
        assert letter.value == bad[:DEAD_LETTER_KEEP_BYTES]


def frame_id(c: codec.Codec[Face] | codec.Codec[Embedding], env: Envelope) -> str:
    return str(c.decode(env.value).ref.frame_id)


@fuzz(3)
@given(size=sizes)
@example(size=P - LETTER_HEADERS_MAX)  # bad, and its dead letter fits whole
@example(size=P)  # bad, at the limit: its dead letter cannot be whole
@example(size=P + 1)  # over the producer's limit
@example(size=10_200_000)  # the frame of the issue: over the producer's limit, within the broker's
@example(size=B)  # the broker refuses it: it never reaches the detector
def test_a_frame_of_any_size_is_dead_lettered_and_the_next_processed(
    deployment: Deployment, size: int
) -> None:
    d = deployment
    camera = f"cam-{uuid.uuid4().hex[:6]}"
    bad, good = frame_of(d, camera, size)
    landed = bad_then_good(d, "detector", bad, codec.FRAMES.encode(good), good.key)
    if size >= B:
        assert landed is None, "the broker took a record over its limit"
    else:
        assert landed is not None, f"the broker refused {size} bytes"
        reason = RECORD_TOO_LARGE if size > P else "bad_jpeg"
        assert_letter(d, "detector", landed, bad, reason, whole=size <= P - LETTER_HEADERS_MAX)
    d.seen.wait_for(
        d.topic(topics.FACES),
        lambda env: frame_id(codec.FACES, env) == good.ref.frame_id,
        f"the face of the good frame behind {size} bytes",
    )
    assert d.procs["detector"].running, d.procs["detector"].tail()


embedder_sizes = st.one_of(
    sizes,
    st.integers(EMBEDDINGS_LIMIT - 300_000, EMBEDDINGS_LIMIT - 100_000),  # its output fits the topic
    st.integers(EMBEDDINGS_LIMIT + 50_000, EMBEDDINGS_LIMIT + 100_000),  # its output does not
)


@fuzz(3)
@given(size=embedder_sizes)
@example(size=EMBEDDINGS_LIMIT - 100_000)  # the output just under the topic's limit
@example(size=EMBEDDINGS_LIMIT + 50_000)  # the output over it: refused by the broker
@example(size=P)  # the output refused, and the input too large to be dead-lettered whole
@example(size=10_200_000)  # a 10 MB thumbnail: over the producer's limit, within the broker's
def test_a_face_whose_output_kafka_refuses_is_dead_lettered_and_the_next_processed(
    deployment: Deployment, size: int
) -> None:
    d = deployment
    camera = f"cam-{uuid.uuid4().hex[:6]}"
    bad, good = face_of(d, camera, size)
    output = output_size(d, bad)
    landed = bad_then_good(d, "embedder", bad, codec.FACES.encode(good), good.key)
    if size >= B:
        assert landed is None, "the broker took a record over its limit"
    else:
        assert landed is not None, f"the broker refused {size} bytes"
        if size > P:
            assert_letter(d, "embedder", landed, bad, RECORD_TOO_LARGE, whole=False)
        elif output + 100 > EMBEDDINGS_LIMIT:
            assert_letter(d, "embedder", landed, bad, OUTPUT_TOO_LARGE, whole=size <= P - LETTER_HEADERS_MAX)
        else:
            assert output + 1_000 < EMBEDDINGS_LIMIT, f"an output of {output} bytes is too close to call"
            d.seen.wait_for(
                d.topic(topics.EMBEDDINGS),
                lambda env: (
                    frame_id(codec.EMBEDDINGS, env) == good.ref.frame_id
                    and codec.EMBEDDINGS.decode(env.value).face_index == 7
                ),
                "the embedding of the face with the large thumbnail",
            )
    d.seen.wait_for(
        d.topic(topics.EMBEDDINGS),
        lambda env: (
            frame_id(codec.EMBEDDINGS, env) == good.ref.frame_id
            and codec.EMBEDDINGS.decode(env.value).face_index == good.face_index
        ),
        f"the embedding of the good face behind {size} bytes",
    )
    assert d.procs["embedder"].running, d.procs["embedder"].tail()
