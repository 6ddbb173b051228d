"""The broker killed and restarted mid-stream, on a broker of this module's own (never the session
one): every service rides it out by itself, consumes again within seconds, and the workload's
result is exactly the expected one, 0 lost and 0 duplicated, every frame once.

Issue 12.6 (slow recovery after a broker restart) set the bounds these tests hold the services to:
every stage's group consuming again within `RESUME_BOUND_S` of the broker being back, a service
started while the broker is down waiting for it (not ready meanwhile) instead of exiting, and the
frame-sampler going on with its files where it was instead of publishing them again. Before: the
first transaction of every stage after a restart blocked for 20 s (librdkafka's re-bootstrap, see
docs/delivery.md), one stage after the other (the matcher consumed again 45 s after the broker was
back), a fenced static member waited for the 120 s stall watch, a matcher started while the broker
was down exited 1, and the sampler published its files again after each restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaException, TopicPartition

from facestream import codec
from facestream.errors import InvalidMessage, RangeUnread
from facestream.messages import Frame, FrameRef
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import (
    KafkaConsumer,
    KafkaProducer,
    RangeReader,
    TransactionalProducer,
    client_config,
    ensure_topics,
    partition_of_key,
)
from facestream.transport.topics import catalogue
from facestream.transport.transactional import Transactional
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import TEST_PARTITIONS, delete_topics, end_offsets
from tests.fixtures.reliability import MilvusServer, PrivateBroker
from tests.integration.processes import ServiceProcess, services, wait_until
from tests.reliability.chaos import Chaos, Watch, kill_broker, service_args
from tests.reliability.workload import (
    EPISODE_GAP_S,
    GROUPS,
    Census,
    camera_configs,
    camera_videos,
    enroll_people,
    expected,
    put_cameras,
    wait_for,
)

pytestmark = pytest.mark.slow

RESUME_BOUND_S = 30.0
"""Issue 12.6: after a broker restart every stage consumes again within this many seconds."""
DOWN_S = 3.0


@pytest.fixture
def broker(private_broker: PrivateBroker, tmp_path: Path) -> Iterator[KafkaSettings]:
    """The private broker's settings with every catalogue topic, under a prefix of this test."""
    settings = private_broker.settings.model_copy(update={"topic_prefix": f"{tmp_path.name[:20]}."})
    ensure_topics(settings, catalogue(settings.topic_prefix, partitions=TEST_PARTITIONS))
    yield settings
    private_broker.resume()
    if not (private_broker.data_dir / "kafka.pid").exists():
        private_broker.start()  # a test that failed with the broker down
    delete_topics(settings, settings.topic_prefix)


class Committed:
    """Where each stage group stands: the sum of its committed offsets on its input, read with one
    consumer per group that never joins it (OffsetFetch only). Not with the admin client: librdkafka
    2.16 can crash on an admin answer that arrives after its request timed out, which is what
    requests do while a restarted broker loads its coordinators."""

    def __init__(self, settings: KafkaSettings) -> None:
        prefix = settings.topic_prefix
        self._inputs = {
            group: [TopicPartition(prefix + topic, p) for p in range(TEST_PARTITIONS[topic])]
            for group, topic in GROUPS
        }
        self._readers = {
            group: CKConsumer(
                {**client_config(settings), "group.id": prefix + group, "enable.auto.commit": False}
            )
            for group, _ in GROUPS
        }

    def offsets(self, group: str) -> dict[int, int] | None:
        """partition -> committed offset (partitions never committed left out); None: no answer."""
        try:
            found = self._readers[group].committed(self._inputs[group], timeout=5)
        except KafkaException:
            return None
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def positions(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for group, _ in GROUPS:
            offsets = self.offsets(group)
            out[group] = None if offsets is None else sum(offsets.values())
        return out

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()


def times_to_resume(committed: Committed, up_at: float, timeout_s: float = 90) -> dict[str, float | None]:
    """Seconds from `up_at` (the broker answering again) until each group was seen committing: its
    position moved past the first one read after `up_at`. Commits made before that first read are
    not seen, so a time can only come out longer than it was, never shorter. None for a group
    seen not committing within `timeout_s` (the files still play, so every stage has input)."""
    first: dict[str, int] = {}
    resumed: dict[str, float | None] = {group: None for group, _ in GROUPS}
    deadline = up_at + timeout_s
    while time.monotonic() < deadline and None in resumed.values():
        for group, position in committed.positions().items():
            if position is None or resumed[group] is not None:
                continue
            if group not in first:
                first[group] = position
            elif position > first[group]:
                resumed[group] = round(time.monotonic() - up_at, 1)
        time.sleep(0.2)
    return resumed


def drained(settings: KafkaSettings, committed: Committed) -> bool:
    """The three runner stages committed their inputs to the end (an idle runner commits past the
    transaction markers, so its committed offsets meet the end offsets)."""
    prefix = settings.topic_prefix
    return all(
        committed.offsets(group) == end_offsets(settings, prefix + topic) for group, topic in GROUPS[:3]
    )


def test_broker_killed_then_restarted_mid_stream_every_stage_resumes_within_seconds_and_nothing_repeats(
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
    # 3 rounds: about 70 s of video, so that both restarts come while the files still play.
    videos = camera_videos(faces_dir, tmp_path, rounds=3)
    specs = put_cameras(settings, camera_configs(videos), tmp_path / "cams.json")
    want = expected(specs, milvus_server.uri, state_dir, finder, embedder)
    frames_topic = settings.topic_prefix + topics.FRAMES

    args = service_args(
        settings, model_settings.model_dir, milvus_server.uri, state_dir, tmp_path, EPISODE_GAP_S
    )
    resumes: dict[str, dict[str, float | None]] = {}
    committed = Committed(settings)
    with contextlib.closing(committed), services(tmp_path) as running:
        chaos = Chaos(running, args)
        chaos.start_all(("detector", "embedder", "matcher"))
        for name in ("detector", "embedder", "matcher"):
            chaos.current[name].wait_ready(120)
        chaos.start("frame-sampler")
        matches = Watch(settings, topics.MATCHES)
        try:
            wait_for(lambda: bool(committed.offsets(GROUPS[0][0])), 120, "the detector's first commit",
                     settings=settings)  # fmt: skip
            published = sum(end_offsets(settings, frames_topic).values())
            assert published < len(want.frame_ids) // 2, "the files were mostly published before the kill"

            for how in ("SIGKILL", "restart"):
                if how == "SIGKILL":
                    kill_broker(private_broker)
                    time.sleep(DOWN_S)
                    private_broker.start()  # same data dir and ports, its logs recovered
                else:
                    # Checked as the broker goes, not after the stages resumed: on a loaded machine
                    # the waits for the stages to resume outlasted the files (CI at 3e441db), and
                    # that failure hid the resume times the assertions below report.
                    left = len(want.frame_ids) - sum(end_offsets(settings, frames_topic).values())
                    assert left > 0, f"the files ended before the second restart (resumes: {resumes})"
                    private_broker.restart(down_s=DOWN_S)  # SIGTERM: a controlled shutdown
                up_at = time.monotonic()
                resumes[how] = times_to_resume(committed, up_at)
                chaos.assert_running()  # nobody gave up while the broker was away

            def every_candidate() -> bool:
                matches.poll()
                return set(matches.keys) >= {c.key for c in want.candidates}

            wait_for(every_candidate, 240, "every expected candidate after the restarts", settings=settings)
            chaos.assert_running()
        finally:
            matches.close()
        wait_for(lambda: sum(end_offsets(settings, frames_topic).values()) >= len(want.frame_ids), 120,
                 "every frame of the files", settings=settings)  # fmt: skip
        wait_for(lambda: drained(settings, committed), 180, "the stages to drain", settings=settings)
        time.sleep(5)  # the episode step commits every few seconds
        census = Census.read(settings)
        exits = chaos.terminate_all()
        sampler_log = chaos.current["frame-sampler"].log()

    print(f"time to consume again after the broker was back, per group: {resumes}")
    print(
        f"frames: {sum(census.frames.values())} published, {len(census.frames)} distinct, "
        f"{len(want.frame_ids)} in the files; sampler log lines of a camera going on after its last frame: "
        f"{sum('after its frame of' in line for line in sampler_log.splitlines())}"
    )
    assert census.problems(want) == []
    repeated = {frame: n for frame, n in census.frames.items() if n != 1}
    assert not repeated, (
        f"{len(repeated)} frames published more than once (a file played again after a restart): "
        f"{sorted(repeated.items())[:5]}; {sum(census.frames.values())} frames published, "
        f"{len(want.frame_ids)} in the files"
    )
    # A camera is started again only if the sampler's group was rejoined (its client fenced, its
    # session lost), which not every run provokes; when it was, it must have gone on where it was.
    for camera in ("gate", "square"):
        starts = [line for line in sampler_log.splitlines() if f"camera {camera} started" in line]
        assert all("after its frame of" in line for line in starts[1:]), f"{camera} played again: {starts}"
    slow = {
        how: {g: t for g, t in times.items() if t is None or t > RESUME_BOUND_S}
        for how, times in resumes.items()
    }
    assert not any(slow.values()), (
        f"issue 12.6: every stage must consume again within {RESUME_BOUND_S:.0f}s of the broker being back; "
        f"these did not (None: not within 90 s): {slow}; all: {resumes}"
    )
    assert exits == {name: 0 for name in exits}


class Copy:
    """Outputs every frame as it came."""

    def __init__(self, name: str) -> None:
        self.name = name

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        return [[item] for item in items]


def keep_publishing(settings: KafkaSettings, stop: threading.Event) -> threading.Thread:
    """Frames into `frames`, a few a second, through the restart (queued while the broker is away)."""

    def publish() -> None:
        producer = KafkaProducer(settings)
        n = 0
        while not stop.wait(0.1):
            frame = Frame(FrameRef(f"cam-{n % 4}", f"cam-{n % 4}@{n}", n, "test"), 1, 1, b"\xff\xd8")
            producer.produce(settings.topic_prefix + topics.FRAMES, codec.FRAMES.encode(frame), key=frame.key)
            n += 1
        producer.close()

    thread = threading.Thread(target=publish, name="publish-frames", daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["SIGKILL", "restart"])
def test_a_transactional_stage_commits_again_within_seconds_of_the_broker_being_back(
    broker: KafkaSettings, private_broker: PrivateBroker, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cause of most of the delay, alone: with librdkafka's default metadata.recovery.strategy
    (rebootstrap) the first send_offsets_to_transaction after a restart blocked until the producer
    was replaced (20 s), in every run of this test (3 of 3 each way). A static member, as deployed."""
    settings = broker
    group = settings.topic_prefix + "facestream-copy"
    stop = threading.Event()
    publisher = keep_publishing(settings, stop)
    consumer = KafkaConsumer(settings, group, instance_id="copy-0")
    producer = TransactionalProducer(settings, f"{group}.copy-0", timeout_s=10)
    runner: StageRunner[Frame, Frame] = StageRunner(
        Copy("copy"),
        Route(
            settings.topic_prefix + topics.FRAMES,
            codec.FRAMES,
            settings.topic_prefix + topics.FACES,
            codec.FRAMES,
            settings.topic_prefix + topics.dlq("detector"),
        ),
        consumer,
        producer,
        policy=LoopPolicy(batch_size=16, batch_timeout_s=0.1, stall_s=120),
        commit=Transactional(consumer, producer),
    )
    runner.start()
    caplog.set_level(logging.WARNING, logger="facestream")
    up: list[float] = []

    def bounce() -> None:
        if how == "SIGKILL":
            kill_broker(private_broker)
            time.sleep(DOWN_S)
            private_broker.start()
        else:
            private_broker.restart(down_s=DOWN_S)
        up.append(time.monotonic())

    try:
        deadline = time.monotonic() + 60
        done = 0
        while done < 50:
            assert time.monotonic() < deadline, "nothing consumed before the restart"
            done += runner.run_once()
        restart = threading.Thread(target=bounce, name="bounce-broker")
        restart.start()
        committed_after: float | None = None
        deadline = time.monotonic() + 180
        while committed_after is None and time.monotonic() < deadline:
            covered = runner.run_once()
            if covered and up:
                committed_after = time.monotonic() - up[0]
        restart.join(120)
    finally:
        stop.set()
        publisher.join(10)
        runner.consumer.close()
        producer.close()
    assert committed_after is not None, "the stage never committed again"
    assert committed_after < 10, f"the first commit after the restart came {committed_after:.1f}s after it"
    replaced = [r.getMessage() for r in caplog.records if "replacing the producer" in r.getMessage()]
    assert not replaced, replaced


def alive(proc: ServiceProcess) -> bool:
    """/healthz: 200 while the process's loop (or its wait for Kafka) keeps going."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port()}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_services_started_while_the_broker_is_down_wait_for_it_and_become_ready(
    broker: KafkaSettings,
    private_broker: PrivateBroker,
    milvus_server: MilvusServer,
    model_settings: ModelSettings,
    tmp_path: Path,
) -> None:
    """A cluster restart, or pods scheduled before the brokers: the detector (a consuming service),
    the matcher (the one with most to open) and the frame-sampler (a source, its own start) wait,
    not ready but alive, and start by themselves once Kafka answers."""
    settings = broker
    args = service_args(
        settings, model_settings.model_dir, milvus_server.uri, tmp_path / "state", tmp_path, EPISODE_GAP_S
    )
    private_broker.stop()
    with services(tmp_path) as running:
        procs = [running.start(name, *args[name]) for name in ("detector", "matcher", "frame-sampler")]

        def waiting(proc: ServiceProcess) -> bool:
            return "waiting for Kafka" in proc.log()

        wait_until(lambda: all(waiting(p) for p in procs), 120, "each to say it waits for Kafka", *procs)
        time.sleep(45)  # past the 40 s a transaction's init used to wait before the service exited 1
        for proc in procs:
            assert proc.running, f"{proc.name} gave up while Kafka was down:\n{proc.tail()}"
            assert not proc.ready(), f"{proc.name} says ready without Kafka"
            assert alive(proc), f"{proc.name}'s liveness fails while it only waits for Kafka"
        private_broker.start()
        for proc in procs:
            proc.wait_ready(120)
        exits = {p.name: p.terminate() for p in procs}
    assert exits == {"detector": 0, "matcher": 0, "frame-sampler": 0}


def test_a_range_read_from_a_hung_broker_says_it_did_not_finish_instead_of_answering_nothing(
    broker: KafkaSettings, private_broker: PrivateBroker
) -> None:
    """The episode step reads skipped offsets of `hits` directly; an empty answer means "only
    transaction markers there" and lets it commit past them. A read that could not reach the end
    of its range (the broker hangs) must say so (RangeUnread), not answer with what it got."""
    topic = broker.topic_prefix + topics.HITS
    producer = KafkaProducer(broker)
    for n in range(3):
        producer.produce(topic, f"hit-{n}".encode(), b"gate")
    producer.flush(30)
    partition = partition_of_key(b"gate", TEST_PARTITIONS[topics.HITS])
    reader = RangeReader(broker)
    try:
        assert [e.value for e in reader.read(topic, partition, 0, 3)] == [b"hit-0", b"hit-1", b"hit-2"]
        private_broker.pause()
        with pytest.raises(RangeUnread, match=r"not read to its end in 3s \(0 message"):
            reader.read(topic, partition, 0, 3, timeout_s=3)
    finally:
        private_broker.resume()
        reader.close()
