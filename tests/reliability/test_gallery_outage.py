"""The matcher while its gallery (a real Milvus server process) is killed, frozen, or in the way
of a shutdown. The gallery is `milvus-lite server`; the kill is also run against a real Milvus
standalone server with an HNSW index, which after a restart reloads its collections by itself
(searches answer "collection not loaded" meanwhile, ~30 s here).

- Killed: the matcher stops consuming and commits nothing while the gallery is down, says why
  (`facestream_gallery_up` 0 and a log line), and resumes by itself when it is back: 0 lost.
- Frozen (SIGSTOP: the search call hangs): the processing loop no longer polls, so /healthz
  fails, and recovers once the gallery answers again.
- SIGTERM with a batch in hand: the batch is finished and committed, the process exits 0; if
  it cannot finish within --shutdown-grace-s, the process exits 3 without committing it.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from facestream import codec
from facestream.messages import Embedding, FrameRef
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.fixtures.media import embedding_of
from tests.fixtures.milvus import MilvusStandalone
from tests.fixtures.reliability import MilvusServer
from tests.integration.processes import ServiceProcess, Services, cli, kafka_args, services, wait_until

pytestmark = pytest.mark.slow

T0 = 1_790_000_000_000


@dataclasses.dataclass
class World:
    settings: KafkaSettings
    milvus: MilvusServer | MilvusStandalone
    index_flags: list[str]
    state_dir: Path
    tmp_path: Path
    obama: Embedding

    @property
    def group(self) -> str:
        return self.settings.topic_prefix + "facestream-matcher"

    @property
    def embeddings_topic(self) -> str:
        return self.settings.topic_prefix + topics.EMBEDDINGS

    def start_matcher(self, running: Services, *extra: str) -> ServiceProcess:
        matcher = running.start(
            "matcher", *kafka_args(self.settings), "--metrics-port", "0", "--replica-id", "matcher-0",
            "--gallery", self.milvus.uri, *self.index_flags, "--state-dir", str(self.state_dir),
            "--episodes-data-dir", str(self.tmp_path / "faust"), *extra,
        )  # fmt: skip
        matcher.wait_ready(120)
        return matcher

    def publish(self, first: int, count: int) -> list[str]:
        """`count` faces of Obama on camera gate, one a second from T0 + `first` s; their frame ids."""
        producer = KafkaProducer(self.settings)
        ids = []
        for n in range(first, first + count):
            at = T0 + n * 1000
            emb = dataclasses.replace(self.obama, ref=FrameRef("gate", f"gate@{at}", at, "test.mp4"))
            producer.produce(self.embeddings_topic, codec.EMBEDDINGS.encode(emb), key=emb.key)
            ids.append(emb.ref.frame_id)
        producer.flush(15)
        return ids

    def hit_frames(self, at_least: int) -> set[str]:
        found = read_topic(self.settings, self.settings.topic_prefix + topics.HITS, at_least, 60)
        return {codec.HITS.decode(e.value).ref.frame_id for e in found}

    def committed(self) -> dict[int, int]:
        return committed_offsets(self.settings, self.group, self.embeddings_topic)

    def ends(self) -> dict[int, int]:
        return {p: e for p, e in end_offsets(self.settings, self.embeddings_topic).items() if e > 0}


@pytest.fixture(params=["milvus-lite"])
def gallery_server(request: pytest.FixtureRequest) -> tuple[MilvusServer | MilvusStandalone, list[str]]:
    """`milvus-lite server` (FLAT), or, as "standalone", a real Milvus server of this test (HNSW)."""
    if request.param == "standalone":
        return request.getfixturevalue("milvus_standalone_factory")(), ["--index-type", "HNSW"]
    return request.getfixturevalue("milvus_server"), []


@pytest.fixture
def world(
    kafka_topics: KafkaSettings,
    gallery_server: tuple[MilvusServer | MilvusStandalone, list[str]],
    model_settings: ModelSettings,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    tmp_path: Path,
) -> Iterator[World]:
    """Obama enrolled in a Milvus server gallery; an embedding of another photo of him."""
    milvus, index_flags = gallery_server
    state_dir = tmp_path / "state"
    common = ["--gallery", milvus.uri, "--state-dir", str(state_dir), "--actor", "pytest"]
    grant = "--case REL-2 --basis test --purpose wanted --issued-by pytest --valid-from 2000-01-01T00:00:00Z"
    granted = cli("authorisation", "grant", *common, *grant.split(), "--valid-until", "2099-01-01T00:00:00Z")
    photos = [str(p) for p in sorted((faces_dir / "enroll").glob("obama_*.jpg"))]
    cli("gallery", "enroll", *common, *index_flags, "--identity", "obama",
        "--authorisation", json.loads(granted)["id"],
        "--model-dir", str(model_settings.model_dir), *photos)  # fmt: skip
    obama = embedding_of(
        finder, embedder, faces_dir / "probe" / "obama.jpg", FrameRef("gate", f"gate@{T0}", T0, "test")
    )
    yield World(kafka_topics, milvus, index_flags, state_dir, tmp_path, obama)


def healthz(proc: ServiceProcess) -> int:
    try:
        url = f"http://127.0.0.1:{proc.metrics_port()}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("gallery_server", ["milvus-lite", "standalone"], indirect=True)
def test_milvus_down_pauses_the_matcher_commits_nothing_and_it_resumes_losing_nothing(world: World) -> None:
    with services(world.tmp_path) as running:
        matcher = world.start_matcher(running)
        wait_until(
            lambda: matcher.metric("facestream_gallery_entries") == 2, 30, "the gallery's size", matcher
        )
        before = world.publish(0, 3)
        assert world.hit_frames(3) == set(before)
        wait_until(lambda: world.committed() == world.ends(), 30, "the first faces committed", matcher)

        world.milvus.kill()
        during = world.publish(3, 5)
        wait_until(lambda: "gallery unavailable, consuming paused" in matcher.log(), 60, "the pause", matcher)
        during += world.publish(8, 3)  # arriving while paused: not fetched (and so not dropped)
        time.sleep(2)
        assert matcher.metric("facestream_gallery_up") == 0
        assert matcher.metric("facestream_stage_errors_total", {"stage": "matcher", "kind": "gallery"}) >= 1
        held = world.committed()
        time.sleep(3)
        assert world.committed() == held != world.ends()  # nothing committed while it is down
        assert world.hit_frames(3) == set(before)

        world.milvus.start()
        wait_until(lambda: world.committed() == world.ends(), 240, "the rest consumed", matcher)
        assert world.hit_frames(11) == set(before) | set(during)  # 0 lost
        hits = read_topic(world.settings, world.settings.topic_prefix + topics.HITS, 11)
        assert len(hits) == 11  # ... and none twice
        assert matcher.metric("facestream_gallery_up") == 1
        assert "gallery back, consuming resumed" in matcher.log()
        assert matcher.terminate() == 0, matcher.tail()


def test_a_hung_gallery_fails_liveness_until_it_answers_again(world: World) -> None:
    with services(world.tmp_path) as running:
        matcher = world.start_matcher(running, "--liveness-timeout-s", "3")
        assert healthz(matcher) == 200
        world.milvus.pause()
        frames = world.publish(0, 2)
        wait_until(lambda: healthz(matcher) == 503, 60, "/healthz to fail", matcher)

        world.milvus.resume()
        wait_until(lambda: healthz(matcher) == 200, 120, "/healthz to recover", matcher)
        wait_until(lambda: world.committed() == world.ends(), 120, "the faces consumed", matcher)
        assert world.hit_frames(2) == set(frames)
        assert matcher.terminate() == 0, matcher.tail()


def test_sigterm_finishes_the_batch_in_hand_commits_and_exits_0(world: World) -> None:
    with services(world.tmp_path) as running:
        matcher = world.start_matcher(running, "--shutdown-grace-s", "60")
        world.milvus.pause()  # the next batch's search waits for the gallery
        frames = world.publish(0, 2)
        time.sleep(3)  # polled and searching
        matcher.proc.send_signal(signal.SIGTERM)
        time.sleep(2)
        assert matcher.running  # still finishing its batch
        world.milvus.resume()

        assert matcher.terminate(90) == 0, matcher.tail()
        assert world.committed() == world.ends()
        assert world.hit_frames(2) == set(frames)


def test_sigterm_exits_3_within_the_grace_period_without_committing_a_stuck_batch(world: World) -> None:
    with services(world.tmp_path) as running:
        matcher = world.start_matcher(running, "--shutdown-grace-s", "3")
        world.publish(0, 1)
        wait_until(lambda: world.committed() == world.ends(), 60, "the first face committed", matcher)
        world.milvus.pause()
        world.publish(1, 2)
        time.sleep(3)
        held = world.committed()

        asked = time.monotonic()
        matcher.proc.send_signal(signal.SIGTERM)
        assert matcher.proc.wait(30) == 3, matcher.tail()
        assert time.monotonic() - asked < 3 + 5
        assert "shutdown grace period of 3s exceeded" in matcher.log()
        assert world.committed() == held != world.ends()
        world.milvus.resume()
