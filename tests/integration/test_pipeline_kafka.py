"""The Kafka pipeline end to end: real broker, the four services as separate processes.

camera video → frame-sampler → frames → detector → faces → embedder → embeddings →
matcher (Milvus Lite gallery, faust episodes) → matches. Also: the sampler group shares
the cameras, and a replica's cameras move to the other when it stops.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from facestream import codec
from facestream.sample import make_camera_video
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from tests.fixtures.kafka import TEST_PARTITIONS, committed_offsets, end_offsets, read_topic
from tests.integration.processes import ServiceProcess, Services, cli, kafka_args, services, wait_until

pytestmark = pytest.mark.slow

EPISODE_GAP_S = 2


def create_topics(settings: KafkaSettings) -> None:
    partitions = ",".join(f"{name}={n}" for name, n in TEST_PARTITIONS.items())
    created = [
        json.loads(line)
        for line in cli("topics", "create", *kafka_args(settings), "--partitions", partitions).splitlines()
    ]
    by_name = {t["topic"]: t for t in created}
    assert by_name[settings.topic_prefix + topics.FRAMES]["created"] is True
    assert by_name[settings.topic_prefix + topics.CAMERAS]["cleanup.policy"] == "compact"


def put_cameras(settings: KafkaSettings, cameras: Sequence[dict[str, object]], path: Path) -> None:
    path.write_text(json.dumps(list(cameras)))
    published = [
        json.loads(line)
        for line in cli("cameras", "put", "--file", str(path), *kafka_args(settings)).splitlines()
    ]
    assert [c["camera_id"] for c in published] == [c["camera_id"] for c in cameras]


def enroll(gallery: Path, model_dir: Path, identity: str, photos: Sequence[Path]) -> None:
    """Under an authorisation granted for the purpose, as `gallery enroll` requires."""
    common = ["--gallery", str(gallery), "--actor", "pytest"]
    grant = "--case IT-1 --basis test --purpose wanted --issued-by pytest --valid-from 2000-01-01T00:00:00Z"
    granted = cli("authorisation", "grant", *common, *grant.split(), "--valid-until", "2099-01-01T00:00:00Z")
    authorisation = json.loads(granted)["id"]
    photo_args = ["--model-dir", str(model_dir), *(str(p) for p in photos)]
    cli("gallery", "enroll", *common, "--identity", identity, "--authorisation", authorisation, *photo_args)


def service_args(settings: KafkaSettings, group: str) -> list[str]:
    return [*kafka_args(settings), "--metrics-port", "0", "--group-id", settings.topic_prefix + group]


def start_consumers(
    running: Services, settings: KafkaSettings, models: ModelSettings, gallery: Path, tmp_path: Path
) -> list[ServiceProcess]:
    model = ["--model-dir", str(models.model_dir), "--execution-provider", "cpu"]
    return [
        running.start("detector", *service_args(settings, "detector"), *model),
        running.start("embedder", *service_args(settings, "embedder"), *model),
        running.start(
            "matcher",
            *service_args(settings, "matcher"),
            "--gallery",
            str(gallery),
            "--episodes-data-dir",
            str(tmp_path / "faust"),
            "--episode-gap-s",
            str(EPISODE_GAP_S),
        ),
    ]


CONSUMED = (
    ("detector", topics.FRAMES),
    ("embedder", topics.FACES),
    ("matcher", topics.EMBEDDINGS),
    ("facestream-episodes", topics.HITS),
)


def finished(proc: ServiceProcess, stage: str, count: int) -> Callable[[], bool]:
    """Has `stage` in `proc` finished `count` input messages (processed or dead-lettered)?"""
    return lambda: proc.metric("facestream_stage_messages_total", {"stage": stage}) >= count


def test_pipeline_one_candidate_per_person_per_episode(
    kafka_prefix: KafkaSettings, model_settings: ModelSettings, faces_dir: Path, tmp_path: Path
) -> None:
    settings = kafka_prefix
    prefix = settings.topic_prefix
    create_topics(settings)
    gallery = tmp_path / "gallery"
    enroll(gallery, model_settings.model_dir, "obama", sorted((faces_dir / "enroll").glob("obama_*.jpg")))
    enroll(
        gallery, model_settings.model_dir, "alex_lacamoire", [faces_dir / "enroll" / "alex_lacamoire_1.jpg"]
    )
    probe = faces_dir / "probe"
    # obama 0-2 s, kit (not enrolled) 5-7 s, alex 10-12 s, obama again 15-17 s: gaps of 3 s > EPISODE_GAP_S.
    video = make_camera_video(
        [
            probe / "obama.jpg",
            probe / "kit_harington_unenrolled.jpg",
            probe / "alex_lacamoire.jpg",
            probe / "obama.jpg",
        ],
        tmp_path / "street.mp4",
        seconds_each=2,
        gap_seconds=3,
    )

    with services(tmp_path) as running:
        consumers = start_consumers(running, settings, model_settings, gallery, tmp_path)
        sampler = running.start("frame-sampler", *service_args(settings, "sampler"), "--fps", "3")
        put_cameras(settings, [{"camera_id": "street-1", "url": str(video)}], tmp_path / "cams.json")

        found = [codec.MATCHES.decode(e.value) for e in read_topic(settings, prefix + topics.MATCHES, 3, 180)]

        opened = sorted((c.ref.captured_at_ms, c.identity) for c in found)
        assert [identity for _, identity in opened] == ["obama", "alex_lacamoire", "obama"], opened
        start = opened[0][0]
        assert [round((at - start) / 1000) for at, _ in opened] == pytest.approx([0, 10, 15], abs=1)
        assert len({c.candidate_id for c in found}) == len({c.episode_id for c in found}) == 3
        assert all(c.ref.camera_id == "street-1" and c.score >= 0.4 for c in found)

        # SIGTERM: every service exits 0 with its input fully committed. The sampler (the source)
        # stops first; each stage is stopped once it has finished what reached it, because a stage
        # stopped while its upstream still produces leaves that tail to its next start, by design.
        assert sampler.terminate() == 0, sampler.tail()
        detector, embedder, matcher = consumers
        for proc, stage, topic in (
            (detector, "detector", topics.FRAMES),
            (embedder, "embedder", topics.FACES),
            (matcher, "matcher", topics.EMBEDDINGS),
            (matcher, "episodes", topics.HITS),
        ):
            count = len(read_topic(settings, prefix + topic, 1, 10))
            wait_until(
                finished(proc, stage, count), 60, f"{stage} to finish the {count} messages of {topic}", proc
            )
        for proc in consumers:
            assert proc.terminate() == 0, proc.tail()
        for group, topic in CONSUMED:
            ends = {p: end for p, end in end_offsets(settings, prefix + topic).items() if end > 0}
            assert ends, f"nothing reached {topic}"
            # Up to the last message; a transactional topic may end in a commit marker (a record
            # that is no message) which a consumer at rest need not have moved past yet.
            last = {e.partition: e.offset + 1 for e in read_topic(settings, prefix + topic, 1, 10)}
            committed = committed_offsets(settings, prefix + group, prefix + topic)
            assert set(committed) == set(ends), group
            assert all(last[p] <= committed[p] <= ends[p] for p in ends), (group, last, committed, ends)

        # Restarted consumers find nothing left to do: nothing is consumed (or produced) twice.
        produced = {
            t: end_offsets(settings, prefix + t)
            for t in (topics.FACES, topics.EMBEDDINGS, topics.HITS, topics.MATCHES)
        }
        restarted = start_consumers(running, settings, model_settings, gallery, tmp_path)
        for proc in restarted:
            proc.wait_ready()
        time.sleep(5)
        assert {t: end_offsets(settings, prefix + t) for t in produced} == produced
        for proc in restarted:
            assert proc.terminate() == 0, proc.tail()


def cameras_on_every_partition(count: int) -> list[str]:
    """Camera ids whose keys land on `count` different partitions (librdkafka's default
    partitioner is CRC32 of the key), so every replica is sure to get at least one."""
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < count:
        camera_id = f"cam-{n}"
        ids.setdefault(zlib.crc32(camera_id.encode()) % count, camera_id)
        n += 1
    return sorted(ids.values())


def running_cameras(proc: ServiceProcess, cameras: Sequence[str], wait_s: float = 3.0) -> set[str]:
    """Cameras whose frame counter grows on this replica now (not just at some time in the past)."""
    before = {c: proc.metric("facestream_frames_published_total", {"camera": c}) for c in cameras}
    time.sleep(wait_s)
    return {c for c in cameras if proc.metric("facestream_frames_published_total", {"camera": c}) > before[c]}


def test_sampler_replicas_share_cameras_and_take_over(
    kafka_topics: KafkaSettings, faces_dir: Path, tmp_path: Path
) -> None:
    settings = kafka_topics
    prefix = settings.topic_prefix
    partitions = TEST_PARTITIONS["cameras"]
    camera_ids = cameras_on_every_partition(partitions)
    video = make_camera_video(
        [faces_dir / "probe" / "obama.jpg"], tmp_path / "loop.mp4", size=(320, 240), seconds_each=2
    )
    cameras = [{"camera_id": c, "url": str(video), "fps": 2} for c in camera_ids]
    sampler = [*service_args(settings, "sampler"), "--realtime-files", "--loop-files"]

    with services(tmp_path) as running:
        first = running.start("frame-sampler", *sampler)
        second = running.start("frame-sampler", *sampler)
        put_cameras(settings, cameras, tmp_path / "cams.json")
        published = read_topic(settings, prefix + topics.CAMERAS, len(cameras))
        assert {e.partition for e in published} == set(range(partitions)), (
            "cameras should cover every partition"
        )

        def shared() -> bool:
            counts = [p.metric("facestream_cameras_assigned") for p in (first, second)]
            return sum(counts) == len(cameras) and min(counts) >= 1

        wait_until(shared, 90, "both replicas running cameras", first, second)
        on_first, on_second = running_cameras(first, camera_ids), running_cameras(second, camera_ids)
        assert on_first and on_second
        assert on_first.isdisjoint(on_second), (on_first, on_second)
        assert on_first | on_second == set(camera_ids)

        stopped_at_ms = int(time.time() * 1000)
        assert first.terminate() == 0, first.tail()
        wait_until(
            lambda: second.metric("facestream_cameras_assigned") == len(cameras),
            60,
            "the remaining replica to take every camera",
            second,
        )
        assert running_cameras(second, camera_ids) == set(camera_ids)
        frames = [codec.FRAMES.decode(e.value) for e in read_topic(settings, prefix + topics.FRAMES, 1, 10)]
        taken_over = {f.ref.camera_id for f in frames if f.ref.captured_at_ms > stopped_at_ms}
        assert taken_over >= on_first
        assert second.terminate() == 0, second.tail()
