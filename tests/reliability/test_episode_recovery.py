"""The episode step after a crash between recording an opening and confirming its candidate.

A matcher killed there leaves, durably, an episode marked opened-but-unconfirmed in the table's
changelog, and its candidate either already in `matches` (killed after publishing) or not
(killed before). The test writes exactly that state, as the killed process would have left
it, then starts a real matcher and redelivers the opening hits: the candidate already
published must not be published again, the other must be published now.
"""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

from facestream import codec
from facestream.messages import BBox, Candidate, FrameRef, Hit
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer, ensure_topics
from facestream.transport.topics import DAY_MS, TopicSpec
from tests.fixtures.kafka import TEST_PARTITIONS, read_topic
from tests.integration.processes import kafka_args, services, wait_until

T0 = 1_790_000_000_000


def hit(camera: str, at_ms: int) -> Hit:
    return Hit(
        ref=FrameRef(camera, f"{camera}@{at_ms}", at_ms, "test.mp4"),
        face_index=0,
        bbox=BBox(10, 10, 90, 90),
        score=0.8,
        identity="obama",
        entry_id="obama-entry",
        authorisation_id="auth-1",
        model_id="model-1",
        thumbnail_jpeg=b"\xff\xd8thumb",
        zone="city-centre",
    )


def partition_of(key: bytes) -> int:
    """librdkafka's default partitioner (CRC32 of the key), as the producers here use it."""
    return zlib.crc32(key) % TEST_PARTITIONS["hits"]


def left_by_a_crash(opening: Hit, opened_at_ms: int) -> dict[str, object]:
    """The episode state recorded (and flushed) before the candidate is published."""
    return {
        "candidate_id": Candidate.open_episode(opening).candidate_id,
        "opened_by": opening.hit_id,
        "first_ms": opening.ref.captured_at_ms,
        "last_ms": opening.ref.captured_at_ms,
        "hits": 1,
        "best_score": opening.score,
        "emitted": False,
        "opened_at_ms": opened_at_ms,
        "seen_at_ms": opened_at_ms,
        "partition": partition_of(opening.key),
    }


def test_a_redelivered_unconfirmed_opening_is_published_once_whatever_the_crash_left(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    settings = kafka_topics
    prefix = settings.topic_prefix
    app_id = f"{prefix}facestream-episodes"
    changelog = f"{app_id}-episodes-changelog"
    ensure_topics(settings, [TopicSpec(changelog, TEST_PARTITIONS["hits"], -1, DAY_MS, "compact")])

    published, unpublished = hit("gate", T0), hit("square", T0)
    crashed_at_ms = int(time.time() * 1000) - 2_000
    producer = KafkaProducer(settings)
    for opening in (published, unpublished):  # the table's changelog is co-partitioned with hits
        producer.raw.produce(
            changelog,
            value=json.dumps(left_by_a_crash(opening, crashed_at_ms)).encode(),
            key=json.dumps(opening.episode_key).encode(),
            partition=partition_of(opening.key),
        )
    already = Candidate.open_episode(published)
    producer.produce(prefix + topics.MATCHES, codec.MATCHES.encode(already), key=already.key)
    producer.flush(15)

    with services(tmp_path) as running:
        matcher = running.start(
            "matcher", *kafka_args(settings), "--metrics-port", "0", "--replica-id", "matcher-0",
            "--gallery", str(tmp_path / "gallery"), "--episodes-data-dir", str(tmp_path / "faust"),
            "--episode-gap-s", "30",
        )  # fmt: skip
        # the opening hits again (never committed: the crash), and more of the same episodes
        for h in (published, unpublished, hit("gate", T0 + 1000), hit("square", T0 + 1000)):
            producer.produce(prefix + topics.HITS, codec.HITS.encode(h), key=h.key)
        producer.flush(15)

        missing = Candidate.open_episode(unpublished)
        wait_until(
            lambda: missing.key in {e.key for e in read_topic(settings, prefix + topics.MATCHES, 2, 1)},
            90,
            "the unpublished candidate",
            matcher,
        )
        time.sleep(3)  # a second copy of either would be out by now
        candidates = [e.key or b"" for e in read_topic(settings, prefix + topics.MATCHES, 2)]
        assert sorted(candidates) == sorted([already.key, missing.key]), matcher.log()
        assert "already in matches: not published again" in matcher.log()
        assert "not in matches: publishing it" in matcher.log()
        assert matcher.terminate() == 0, matcher.tail()
