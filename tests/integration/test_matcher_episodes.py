"""The matcher process: episodes survive a restart (faust table from its changelog), no hit's
timestamp hides another's candidate, and SIGTERM exits 0 with both of its consumer groups
committed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facestream import codec
from facestream.messages import BBox, Candidate, Embedding, EpisodeEnd, FrameRef, Hit, Quality
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from tests.fixtures.hits import make_hit as hit
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.integration.processes import Services, kafka_args, services

T0 = 1_700_000_000_000


def stranger(camera: str, at_ms: int, seed: int) -> Embedding:
    """A face the (empty) gallery cannot match: the matcher consumes it and outputs nothing."""
    vector = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    return Embedding(
        ref=FrameRef(camera, f"{camera}@{at_ms}", at_ms, "test.mp4"),
        face_index=0,
        bbox=BBox(10, 10, 90, 90),
        quality=Quality(0.99, 80.0, 100.0, 0.0),
        model_id="model-1",
        vector=vector / np.linalg.norm(vector),
        thumbnail_jpeg=b"\xff\xd8thumb",
    )


def publish(settings: KafkaSettings, hits: Sequence[Hit], embeddings: Sequence[Embedding] = ()) -> None:
    producer = KafkaProducer(settings)
    for h in hits:
        producer.produce(settings.topic_prefix + topics.HITS, codec.HITS.encode(h), key=h.key)
    for e in embeddings:
        producer.produce(settings.topic_prefix + topics.EMBEDDINGS, codec.EMBEDDINGS.encode(e), key=e.key)
    producer.flush(15)


def candidates(settings: KafkaSettings, count: int, timeout_s: float = 60) -> list[Candidate]:
    return [
        codec.MATCHES.decode(e.value)
        for e in read_topic(settings, settings.topic_prefix + topics.MATCHES, count, timeout_s)
    ]


def episode_ends(settings: KafkaSettings, count: int, timeout_s: float = 60) -> list[EpisodeEnd]:
    return [
        codec.EPISODES.decode(e.value)
        for e in read_topic(settings, settings.topic_prefix + topics.EPISODES_ENDED, count, timeout_s)
    ]


def start_matcher(running: Services, settings: KafkaSettings, tmp_path: Path, gap_s: float = 30) -> None:
    running.start(
        "matcher",
        *kafka_args(settings),
        "--metrics-port",
        "0",
        "--gallery",
        str(tmp_path / "gallery"),
        "--group-id",
        settings.topic_prefix + "matcher",
        "--episodes-data-dir",
        str(tmp_path / "faust"),
        "--episode-gap-s",
        str(gap_s),
    )


def assert_all_committed(settings: KafkaSettings) -> None:
    prefix = settings.topic_prefix
    for group, topic in (
        (prefix + "matcher", prefix + topics.EMBEDDINGS),
        (prefix + "facestream-episodes", prefix + topics.HITS),
    ):
        ends = {p: end for p, end in end_offsets(settings, topic).items() if end > 0}
        assert committed_offsets(settings, group, topic) == ends, f"{group} on {topic}"


def test_restart_mid_episode_recovers_the_episode_from_the_changelog(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    settings = kafka_topics
    with services(tmp_path) as running:
        start_matcher(running, settings, tmp_path)
        publish(
            settings,
            [hit("cam-1", T0), hit("cam-1", T0 + 1000), hit("cam-1", T0 + 2000)],
            [stranger("cam-1", T0, 1), stranger("cam-2", T0, 2)],
        )
        first = candidates(settings, 1)
        assert [(c.identity, c.ref.camera_id, c.ref.captured_at_ms) for c in first] == [
            ("obama", "cam-1", T0)
        ]

        assert running.started[0].terminate() == 0
        assert_all_committed(settings)

        # Same episode (within 30 s of the last hit), a new one after the gap, another camera.
        publish(
            settings,
            [
                hit("cam-1", T0 + 3000),
                hit("cam-1", T0 + 4000),
                hit("cam-1", T0 + 100_000),
                hit("cam-2", T0 + 5000),
            ],
            [stranger("cam-1", T0 + 3000, 3)],
        )
        start_matcher(running, settings, tmp_path)
        after = candidates(settings, 3)

        opened = sorted((c.ref.camera_id, c.ref.captured_at_ms) for c in after)
        assert opened == [("cam-1", T0), ("cam-1", T0 + 100_000), ("cam-2", T0 + 5000)]
        assert len({c.candidate_id for c in after}) == 3
        assert {c.candidate_id for c in after} >= {first[0].candidate_id}
        assert running.started[1].terminate() == 0
        assert_all_committed(settings)


def test_an_episode_gone_quiet_is_reported_ended_once_across_a_restart(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    """The face-gone event: no hit of an episode for the gap (2 s here) puts its end on
    `episodes.ended`, keyed by its candidate; the mark is in the table's changelog, so a restarted
    matcher does not report it again, and reports the next episode's end in its turn."""
    settings = kafka_topics
    with services(tmp_path) as running:
        start_matcher(running, settings, tmp_path, gap_s=2)
        publish(settings, [hit("cam-1", T0), hit("cam-1", T0 + 1000)])
        (candidate,) = candidates(settings, 1)
        (end,) = episode_ends(settings, 1)
        assert (end.candidate_id, end.episode_id, end.identity, end.camera_id) == (
            candidate.candidate_id, candidate.episode_id, "obama", "cam-1",
        )  # fmt: skip
        assert (end.first_seen_ms, end.last_seen_ms, end.hits, end.zone) == (T0, T0 + 1000, 2, candidate.zone)
        assert running.started[0].terminate() == 0

        start_matcher(running, settings, tmp_path, gap_s=2)
        publish(settings, [hit("cam-2", T0 + 5000)])
        ends = episode_ends(settings, 2)  # cam-2's comes 2 s after its hit: well after any repeat
        assert [(e.camera_id, e.hits) for e in ends] == [("cam-1", 2), ("cam-2", 1)]
        assert running.started[1].terminate() == 0
        assert_all_committed(settings)


def test_no_record_time_hides_a_candidate_across_a_restart(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    """Issue 12: a hit dated 2096 (written straight onto `hits`, past any detector), a far-past
    one and one ahead of the genuine hits each open an episode of their own; the genuine hits
    still open theirs, and replays of all of them, after a restart, open nothing."""
    settings = kafka_topics
    year_2096, jan_1970 = 4_000_000_000_000, 86_400_000
    with services(tmp_path) as running:
        start_matcher(running, settings, tmp_path)
        publish(settings, [hit("cam-1", t) for t in (year_2096, T0, T0 + 1000, T0 + 200_000)])
        first = candidates(settings, 3, timeout_s=180)  # the last hit's: every hit before it is applied
        assert sorted(c.ref.captured_at_ms for c in first) == [T0, T0 + 200_000, year_2096]
        assert running.started[0].terminate() == 0
        assert_all_committed(settings)

        replays = [hit("cam-1", t) for t in (year_2096, T0, T0 + 1000)]
        publish(
            settings,
            [
                *replays,
                hit("cam-1", jan_1970),
                hit("cam-1", T0 + 300_000),
                hit("cam-1", T0 + 2000),  # the genuine episode of T0 goes on
                hit("cam-1", T0 + 100_000),  # older than the hit before it, more than the gap
            ],
        )
        start_matcher(running, settings, tmp_path)
        after = candidates(settings, 6, timeout_s=180)
        assert running.started[1].terminate() == 0
        assert_all_committed(settings)

    opened = sorted(c.ref.captured_at_ms for c in after)
    assert opened == [jan_1970, T0, T0 + 100_000, T0 + 200_000, T0 + 300_000, year_2096]
    assert len({c.candidate_id for c in after}) == 6
    assert {c.candidate_id for c in first} <= {c.candidate_id for c in after}


def test_matcher_without_its_topics_exits_2_with_one_line(
    kafka_prefix: KafkaSettings, tmp_path: Path
) -> None:
    with services(tmp_path) as running:
        start_matcher(running, kafka_prefix, tmp_path)
        matcher = running.started[0]
        assert matcher.proc.wait(60) == 2
        errors = [line for line in matcher.log().splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "facestream topics create" in errors[0], matcher.tail()
        assert not (tmp_path / "gallery").exists()  # it stopped before opening anything
