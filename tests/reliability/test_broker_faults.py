"""The broker restarted mid-stream, on a broker of this module's own (never the session one):
every service rides it out by itself, and the workload's result is exactly the expected one,
0 lost and 0 duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import ensure_topics
from facestream.transport.topics import catalogue
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import TEST_PARTITIONS, delete_topics, end_offsets
from tests.fixtures.reliability import MilvusServer, PrivateBroker
from tests.integration.processes import services, wait_until
from tests.reliability.chaos import Chaos, Watch, service_args
from tests.reliability.workload import (
    EPISODE_GAP_S,
    Census,
    camera_configs,
    camera_videos,
    enroll_people,
    expected,
    put_cameras,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(private_broker: PrivateBroker, tmp_path: Path) -> Iterator[KafkaSettings]:
    """The private broker's settings with every catalogue topic, under a prefix of this test."""
    settings = private_broker.settings.model_copy(update={"topic_prefix": f"{tmp_path.name[:20]}."})
    ensure_topics(settings, catalogue(settings.topic_prefix, partitions=TEST_PARTITIONS))
    yield settings
    private_broker.resume()
    delete_topics(settings, settings.topic_prefix)


def test_broker_restart_mid_stream_every_service_resumes_and_nothing_is_lost(
    broker: KafkaSettings,
    private_broker: PrivateBroker,
    milvus_server: MilvusServer,
    model_settings: ModelSettings,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    tmp_path: Path,
) -> None:
    settings = broker
    state_dir = tmp_path / "state"
    enroll_people(milvus_server.uri, state_dir, model_settings.model_dir, faces_dir)
    specs = put_cameras(settings, camera_configs(camera_videos(faces_dir, tmp_path)), tmp_path / "cams.json")
    want = expected(specs, milvus_server.uri, state_dir, finder, embedder)

    args = service_args(
        settings, model_settings.model_dir, milvus_server.uri, state_dir, tmp_path, EPISODE_GAP_S
    )
    with services(tmp_path) as running:
        chaos = Chaos(running, args)
        chaos.start_all(("detector", "embedder", "matcher"))
        for name in ("detector", "embedder", "matcher"):
            chaos.current[name].wait_ready(120)
        chaos.start("frame-sampler")
        matches = Watch(settings, topics.MATCHES)
        try:
            wait_for(lambda: matches.poll() >= 2, 120, "the first candidates")
            private_broker.restart(down_s=3)  # same data dir and ports
            matches.poll()

            def every_candidate() -> bool:
                matches.poll()
                return set(matches.keys) >= {c.key for c in want.candidates}

            wait_for(every_candidate, 240, "every expected candidate after the restart", settings=settings)
            chaos.assert_running()  # nobody gave up while the broker was away
        finally:
            matches.close()
        wait_until(lambda: sum(end_offsets(settings, settings.topic_prefix + topics.FRAMES).values()) > 0,
                   5, "frames")  # fmt: skip
        time.sleep(25)  # the cameras end (20 s of video each) and the rest drains
        census = Census.read(settings)
        assert census.problems(want) == []
        exits = chaos.terminate_all()
        assert exits == {name: 0 for name in exits}
