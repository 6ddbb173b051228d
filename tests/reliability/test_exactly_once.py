"""Nothing lost, nothing duplicated, with every stage SIGKILLed three times mid-stream.

The four services run as real processes on the real broker, with a Milvus server gallery,
over two file cameras played in real time (three episodes each, four enrolled people). Each
stage is killed three times while the workload runs and started again at once; some kills
are timed to hurt most: the matcher right after it published a candidate (its opening hit is
then redelivered), the sampler after the second episode of a person was reported (started again
with `--resume-lookback-records 0` it cannot look up where it stopped, and plays the file again
from its start, so the first episode's hits arrive after the later one; its first two restarts
go on where they stopped).
At the end every topic is read back and checked against the same stages run in this process
(reliability/workload.py): every expected id, no other, and each output exactly as often as
the input message it came from; every expected candidate in `matches` exactly once.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import committed_offsets, end_offsets
from tests.fixtures.reliability import MilvusServer
from tests.integration.processes import services
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

SEED = 20261121


def quiet(settings: KafkaSettings, for_s: float) -> bool:
    """No topic of the pipeline grew for `for_s` seconds (the cameras ended, everything drained)."""
    names = [settings.topic_prefix + t for t in (topics.FRAMES, topics.FACES, topics.EMBEDDINGS, topics.HITS)]
    before = [end_offsets(settings, n) for n in names]
    time.sleep(for_s)
    return [end_offsets(settings, n) for n in names] == before


def test_sigkill_each_stage_three_times_loses_and_duplicates_nothing(
    kafka_topics: KafkaSettings,
    milvus_server: MilvusServer,
    model_settings: ModelSettings,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    tmp_path: Path,
) -> None:
    settings = kafka_topics
    state_dir = tmp_path / "state"
    enroll_people(milvus_server.uri, state_dir, model_settings.model_dir, faces_dir)
    specs = put_cameras(settings, camera_configs(camera_videos(faces_dir, tmp_path)), tmp_path / "cams.json")
    want = expected(specs, milvus_server.uri, state_dir, finder, embedder)
    assert len(want.candidates) == 8, sorted((c.ref.camera_id, c.identity) for c in want.candidates)
    second_obama_at_gate = want.candidate("gate", "obama", 1).candidate_id.encode()

    rng = random.Random(SEED)
    args = service_args(
        settings, model_settings.model_dir, milvus_server.uri, state_dir, tmp_path, EPISODE_GAP_S
    )
    with services(tmp_path) as running:
        chaos = Chaos(running, args)
        chaos.start_all(("detector", "embedder", "matcher"))
        for name in ("detector", "embedder", "matcher"):
            chaos.current[name].wait_ready(120)
        chaos.start("frame-sampler")
        matches, hits = Watch(settings, topics.MATCHES), Watch(settings, topics.HITS)

        def pause() -> None:
            time.sleep(rng.uniform(1.0, 3.0))

        def until(watch: Watch, what: str, timeout_s: float, key: bytes | None = None) -> str:
            """Wait until something new (or `key`) reaches the watched topic; say when it did."""
            seen = watch.poll(0)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                watch.poll()
                if (key is None and len(watch.keys) > seen) or (key is not None and key in watch.keys):
                    return f"right after {what}"
            return f"({what} did not come within {timeout_s:.0f}s)"

        try:
            wait_for(lambda: sum(end_offsets(settings, settings.topic_prefix + topics.FRAMES).values()) >= 4,
                     60, "the first frames")  # fmt: skip
            for round_ in range(3):
                pause()
                chaos.kill("detector")
                pause()
                chaos.kill("embedder")
                if round_ < 2:
                    chaos.kill("matcher", until(matches, "a new candidate", 45))
                else:
                    chaos.kill("matcher", until(hits, "a new hit", 20))
                if round_ < 2:
                    pause()
                    chaos.kill("frame-sampler")
                else:
                    # A sampler that cannot look up where it stopped: the files again from their start.
                    chaos.args["frame-sampler"] = [*args["frame-sampler"], "--resume-lookback-records", "0"]
                    chaos.kill(
                        "frame-sampler", until(matches, "gate's second obama", 90, second_obama_at_gate)
                    )
                chaos.assert_running()

            def every_candidate() -> bool:
                matches.poll()
                return set(matches.keys) >= {c.key for c in want.candidates}

            wait_for(every_candidate, 240, "every expected candidate", settings=settings)
            wait_for(lambda: quiet(settings, 6), 240, "the cameras to end and the pipeline to drain")
            chaos.assert_running()
            census = Census.read(settings)
        finally:
            matches.close()
            hits.close()

        assert census.problems(want) == [], chaos.story()
        assert set(census.matches) == want.candidate_ids  # said above too; here for the reader
        assert all(n >= 1 for n in census.frames.values()) and max(census.frames.values()) > 1, (
            "the sampler's last restart should have repeated frames (with their ids)"
        )
        exits = chaos.terminate_all()
        assert exits == {name: 0 for name in exits}, chaos.story()
        prefix = settings.topic_prefix
        for group, topic in (("facestream-detector", topics.FRAMES), ("facestream-embedder", topics.FACES),
                             ("facestream-matcher", topics.EMBEDDINGS)):  # fmt: skip
            # default group ids carry the topic prefix; everything consumed is committed
            committed = committed_offsets(settings, prefix + group, prefix + topic)
            ends = {p: e for p, e in end_offsets(settings, prefix + topic).items() if e > 0}
            assert committed == ends, (group, committed, ends)
