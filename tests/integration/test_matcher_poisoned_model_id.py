"""Issue 12.2 on the real broker: the matcher service (Milvus Lite gallery, Obama enrolled through
the CLI) reads records whose model_id no gallery filter can take — a filter injection, and the id
a model file named with spaces used to give — followed on the same partition by a good one. The
poisoned ones land in `dlq.matcher`, their original bytes with reason `bad_model_id`; the good
one is matched; the matcher keeps running and commits past all of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from facestream import codec
from facestream.accountability.clock import now_ms
from facestream.messages import FrameRef
from facestream.settings import KafkaSettings, ModelSettings
from facestream.stages.match import BAD_MODEL_ID
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.fixtures.media import embedding_of, facestream_cli, grant_authorisation
from tests.integration.processes import kafka_args, services, wait_until

pytestmark = pytest.mark.slow

CAMERA = "gate"
POISONED = ['m" or model_id != "', "arcface r50 (licensed)@87aacdfe5751"]


def test_poisoned_model_ids_are_dead_lettered_and_the_good_record_behind_them_matches(
    kafka_topics: KafkaSettings,
    model_settings: ModelSettings,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    tmp_path: Path,
) -> None:
    settings, models, gallery = kafka_topics, model_settings.model_dir, str(tmp_path / "gallery")
    auth = grant_authorisation(gallery, model_dir=models)
    enrolled = facestream_cli(
        "gallery", "enroll", "--gallery", gallery, "--authorisation", auth, "--identity", "obama",
        str(faces_dir / "enroll" / "obama_1.jpg"), model_dir=models,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    good = embedding_of(
        finder, embedder, faces_dir / "probe" / "obama.jpg", FrameRef(CAMERA, "good", now_ms(), "t")
    )
    poisoned = [
        codec.EMBEDDINGS.encode(
            dataclasses.replace(good, ref=dataclasses.replace(good.ref, frame_id=f"bad-{n}"), model_id=m)
        )
        for n, m in enumerate(POISONED)
    ]
    topic = settings.topic_prefix + topics.EMBEDDINGS

    with services(tmp_path) as running:
        matcher = running.start(
            "matcher", *kafka_args(settings), "--metrics-port", "0", "--gallery", gallery,
            "--group-id", settings.topic_prefix + "matcher", "--episodes-data-dir", str(tmp_path / "faust"),
        )  # fmt: skip
        matcher.wait_ready(120)
        producer = KafkaProducer(settings)
        for value in [*poisoned, codec.EMBEDDINGS.encode(good)]:
            producer.produce(topic, value, key=good.key)  # one key: one partition, in this order
        producer.flush(15)

        hits = [
            codec.HITS.decode(e.value)
            for e in read_topic(settings, settings.topic_prefix + topics.HITS, 1, 120)
        ]
        assert [(h.ref.frame_id, h.identity) for h in hits] == [("good", "obama")]
        letters = read_topic(settings, settings.topic_prefix + topics.dlq("matcher"), len(poisoned), 120)
        assert [e.value for e in letters] == poisoned  # the original bytes, in order
        for letter, model_id in zip(letters, POISONED, strict=True):
            headers = {k: v.decode() for k, v in letter.headers}
            assert headers["fs.dlq.reason"] == BAD_MODEL_ID and headers["fs.dlq.stage"] == "matcher"
            assert headers["fs.dlq.detail"].startswith(f"model_id {model_id!r} cannot name a gallery model")
        assert (
            matcher.metric("facestream_dlq_messages_total", {"stage": "matcher", "reason": BAD_MODEL_ID}) == 2
        )

        def consumed() -> bool:
            ends = {p: end for p, end in end_offsets(settings, topic).items() if end > 0}
            return committed_offsets(settings, settings.topic_prefix + "matcher", topic) == ends

        wait_until(consumed, 60, "the matcher's commit past every record", matcher)
        assert matcher.running
        assert matcher.terminate() == 0
