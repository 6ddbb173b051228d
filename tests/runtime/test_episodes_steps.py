"""The episode step's units (runtime/episodes_steps.py), each on its own, without a broker.

The units are the real ones over a real `EpisodeTracker` and `OffsetGuard` on dicts; only what
they talk to (a topic, Kafka's answers, faust's consumer) is a list or a dict here. The faust
wiring itself runs against the broker in tests/runtime/test_episodes_commits.py,
tests/integration/test_matcher_episodes.py and tests/reliability/test_episode_recovery.py.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client import REGISTRY

from facestream import codec
from facestream.errors import DeliveryError, RangeUnread
from facestream.messages import Candidate, EpisodeEnd, Hit
from facestream.runtime.episodes_app import EpisodesApp, EpisodesConfig
from facestream.runtime.episodes_steps import (
    READBACK_MARGIN_MS,
    CandidateOutput,
    EndReporter,
    Expiry,
    HitApplier,
    OrderedApply,
    PartitionLike,
    Seeder,
    Unstaller,
)
from facestream.runtime.offset_guard import OffsetGuard
from facestream.settings import KafkaSettings
from facestream.stages.episodes import EpisodeTracker
from facestream.transport import topics
from facestream.transport.base import Envelope, Headers
from tests.fixtures.clock import Clock
from tests.fixtures.hits import make_hit

HITS = "t.hits"
T0 = 1_700_000_000_000


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def envelope(hit: Hit | bytes, offset: int, partition: int = 0) -> Envelope:
    value = hit if isinstance(hit, bytes) else codec.HITS.encode(hit)
    key = None if isinstance(hit, bytes) else hit.key
    return Envelope(topic=HITS, partition=partition, offset=offset, key=key, value=value)


@dataclass
class Topic:
    """A topic that records what was sent to it, and can be made to refuse."""

    sent: list[tuple[bytes, bytes | None, Headers]] = field(default_factory=list)
    refuse: bool = False
    journal: list[str] | None = None

    async def __call__(self, value: bytes, key: bytes | None, headers: Headers) -> None:
        if self.refuse:
            raise DeliveryError("broker away")
        self.sent.append((value, key, headers))
        if self.journal is not None:
            self.journal.append("send")


@dataclass
class World:
    """A HitApplier over a dict state, with everything it writes to recorded."""

    state: dict[str, Any] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)
    in_matches: set[bytes] = field(default_factory=set)
    asked: list[tuple[bytes, int]] = field(default_factory=list)
    matches: Topic = field(default_factory=Topic)
    dead: Topic = field(default_factory=Topic)
    clock: Clock = field(default_factory=lambda: Clock(T0 / 1000))

    def __post_init__(self) -> None:
        self.matches.journal = self.journal
        self.tracker = EpisodeTracker(self.state, gap_ms=30_000, clock=self.clock)
        self.output = CandidateOutput(self.matches, self.find_key, wall=self.clock)
        self.applier = HitApplier(
            self.tracker,
            self.output,
            dead_letter=self.dead,
            flush_state=self.flush,
            expiry=Expiry(self.tracker, 3_600_000, monotonic=self.clock, wall=self.clock),
        )

    async def flush(self) -> None:
        emitted = [e["emitted"] for record in self.state.values() for e in record["episodes"]]
        self.journal.append(f"flush emitted={emitted}")

    def find_key(self, key: bytes, since_ms: int) -> bool:
        self.asked.append((key, since_ms))
        return key in self.in_matches

    def candidates(self) -> list[Candidate]:
        return [codec.MATCHES.decode(value) for value, _, _ in self.matches.sent]

    def emitted(self, hit: Hit) -> list[bool]:
        return [e["emitted"] for e in self.state[hit.episode_key]["episodes"] if e["opened_by"] == hit.hit_id]


# -- HitApplier: the order of the writes for an opening hit ---------------------------------


def test_an_opening_is_durable_unconfirmed_before_its_candidate_and_confirmed_after() -> None:
    world = World()
    hit = make_hit("cam-1", T0)
    counted = REGISTRY.get_sample_value("facestream_candidates_total") or 0.0

    run(world.applier.apply(envelope(hit, 0)))

    assert world.journal == ["flush emitted=[False]", "send"]
    assert [c.candidate_id for c in world.candidates()] == [Candidate.open_episode(hit).candidate_id]
    assert world.matches.sent[0][1] == Candidate.open_episode(hit).key
    assert world.matches.sent[0][2] == ()
    assert world.emitted(hit) == [True]
    assert REGISTRY.get_sample_value("facestream_candidates_total") == counted + 1


def test_hits_of_an_open_episode_publish_nothing_and_a_new_episode_one_more() -> None:
    world = World()
    for offset, at in enumerate((T0, T0 + 1000, T0 + 2000, T0 + 100_000)):
        run(world.applier.apply(envelope(make_hit("cam-1", at), offset)))

    assert [c.ref.captured_at_ms for c in world.candidates()] == [T0, T0 + 100_000]


def test_a_candidate_not_acknowledged_leaves_its_episode_unconfirmed_for_the_redelivery() -> None:
    world = World()
    hit = make_hit("cam-1", T0)
    world.matches.refuse = True

    with pytest.raises(DeliveryError):
        run(world.applier.apply(envelope(hit, 0)))

    assert world.emitted(hit) == [False]
    opening = world.tracker.track(hit)
    assert opening is not None and opening.repeat


@pytest.mark.parametrize("already_there", [True, False])
def test_a_redelivered_unconfirmed_opening_is_looked_for_in_matches_and_published_only_if_missing(
    already_there: bool,
) -> None:
    world = World()
    hit = make_hit("cam-1", T0)
    world.matches.refuse = True
    with pytest.raises(DeliveryError):
        run(world.applier.apply(envelope(hit, 0)))  # the crash between opening and confirming
    world.matches.refuse = False
    opened_at_ms = world.state[hit.episode_key]["episodes"][0]["opened_at_ms"]
    if already_there:
        world.in_matches.add(Candidate.open_episode(hit).key)
    world.journal.clear()

    run(world.applier.apply(envelope(hit, 0)))

    assert world.asked == [(Candidate.open_episode(hit).key, opened_at_ms - READBACK_MARGIN_MS)]
    assert world.journal == ([] if already_there else ["send"])  # no flush: the opening is durable
    assert len(world.candidates()) == (0 if already_there else 1)
    assert world.emitted(hit) == [True]


def test_a_record_that_is_not_a_hit_goes_to_the_dead_letter_topic_with_its_origin() -> None:
    world = World()

    run(world.applier.apply(envelope(b"\x00not a hit", 7, partition=1)))

    [(value, _, headers)] = world.dead.sent
    assert value == b"\x00not a hit"
    origin = dict(headers)
    assert (origin["fs.dlq.stage"], origin["fs.dlq.topic"]) == (b"episodes", HITS.encode())
    assert (origin["fs.dlq.partition"], origin["fs.dlq.offset"]) == (b"1", b"7")
    assert world.state == {} and world.matches.sent == []


# -- Expiry ----------------------------------------------------------------------------------


def test_expiry_sweeps_a_partition_once_per_period_and_only_that_partitions_episodes() -> None:
    clock = Clock(T0 / 1000)
    state: dict[str, Any] = {}
    tracker = EpisodeTracker(state, gap_ms=30_000, clock=clock)
    expiry = Expiry(tracker, ttl_ms=600_000, every_s=60, monotonic=clock, wall=clock)
    old_0, old_1 = make_hit("cam-1", T0), make_hit("cam-2", T0)
    tracker.track(old_0, 0)
    tracker.track(old_1, 1)

    clock.now += 3600
    assert expiry.after_hit(0) == 0  # the first look only starts the partition's period
    clock.now += 30
    assert expiry.after_hit(0) == 0  # within the period
    clock.now += 30
    assert expiry.after_hit(0) == 1

    assert set(state) == {old_1.episode_key}  # partition 1's episode waits for a hit of its own


# -- EndReporter ------------------------------------------------------------------------------


def ended(world: World, topic: Topic, partitions: set[int]) -> list[EpisodeEnd]:
    """One tick of the end timer over `partitions`; the ends it published then."""
    before = len(topic.sent)
    published = run(EndReporter(world.tracker, topic, world.flush).tick(partitions))
    ends = [codec.EPISODES.decode(value) for value, _, _ in topic.sent[before:]]
    assert published == len(ends)
    return ends


def test_an_episode_quiet_for_the_gap_is_reported_ended_once_then_again_only_with_more_hits() -> None:
    world, topic = World(), Topic()
    topic.journal = world.journal
    first = make_hit("cam-1", T0)
    for offset, at in enumerate((T0, T0 + 1000)):
        run(world.applier.apply(envelope(make_hit("cam-1", at), offset)))
    (candidate,) = world.candidates()
    world.clock.now += 29.999
    assert ended(world, topic, {0}) == []  # a hit may still come within the gap
    world.clock.now += 0.001
    world.journal.clear()

    (end,) = ended(world, topic, {0})

    assert (end.candidate_id, end.episode_id, end.identity, end.camera_id) == (
        candidate.candidate_id, candidate.episode_id, "obama", "cam-1",
    )  # fmt: skip
    assert (end.first_seen_ms, end.last_seen_ms, end.hits) == (T0, T0 + 1000, 2)
    assert (end.zone, end.authorisation_id) == (first.zone, first.authorisation_id)
    assert end.best_score == pytest.approx(first.score, abs=1e-6)  # a float32 on the wire
    assert end.ended_at_ms == round(world.clock.now * 1000)
    assert topic.sent[0][1] == candidate.key
    assert world.journal[0] == "send" and world.journal[-1].startswith("flush")  # marked after it was sent
    assert ended(world, topic, {0}) == []  # reported: not again

    # A late hit that still belongs to the episode (event time within the gap): reported again, updated.
    run(world.applier.apply(envelope(make_hit("cam-1", T0 + 2000), 2)))
    assert world.candidates() == [candidate]
    world.clock.now += 30
    (update,) = ended(world, topic, {0})
    assert (update.episode_id, update.hits, update.last_seen_ms) == (end.episode_id, 3, T0 + 2000)


def test_only_this_workers_partitions_and_published_candidates_are_reported() -> None:
    world, topic = World(), Topic()
    run(world.applier.apply(envelope(make_hit("cam-1", T0), 0, partition=0)))
    run(world.applier.apply(envelope(make_hit("cam-2", T0), 0, partition=1)))
    world.tracker.track(make_hit("cam-3", T0), 0)  # opened, its candidate not (yet) published
    world.clock.now += 60

    assert [e.camera_id for e in ended(world, topic, {1})] == ["cam-2"]
    assert ended(world, topic, set()) == []  # no partition (a rebalance took them all)
    assert [e.camera_id for e in ended(world, topic, {0, 1})] == ["cam-1"]


def test_an_end_the_topic_refused_stays_due_for_the_next_tick() -> None:
    world, topic = World(), Topic(refuse=True)
    run(world.applier.apply(envelope(make_hit("cam-1", T0), 0)))
    world.clock.now += 60
    with pytest.raises(DeliveryError):
        ended(world, topic, {0})
    topic.refuse = False
    assert [e.hits for e in ended(world, topic, {0})] == [1]


# -- Seeder -----------------------------------------------------------------------------------


class Kafka:
    """Answers where the group starts a partition, after refusing `silent` times."""

    def __init__(self, starts: dict[int, int], silent: int = 0) -> None:
        self.starts = starts
        self.silent = silent
        self.asked: list[int] = []

    def start_offset(self, partition: int) -> int:
        self.asked.append(partition)
        if self.silent > 0:
            self.silent -= 1
            raise DeliveryError("group coordinator not available")
        return self.starts[partition]


def test_a_partition_is_seeded_once_from_where_the_group_starts_it() -> None:
    guard, kafka = OffsetGuard({}), Kafka({3: 40})
    seeder = Seeder(guard, kafka.start_offset)

    assert run(seeder.seed(3, wait=True)) is True
    assert run(seeder.seed(3, wait=True)) is True

    assert guard.expected(3) == 40 and kafka.asked == [3]


def test_a_partition_with_progress_recovered_is_not_asked_about() -> None:
    guard, kafka = OffsetGuard({"3": 12}), Kafka({})

    assert run(Seeder(guard, kafka.start_offset).seed(3, wait=False)) is True

    assert kafka.asked == [] and guard.expected(3) == 12


def test_the_event_in_hand_waits_for_kafka_to_answer() -> None:
    guard, kafka = OffsetGuard({}), Kafka({0: 5}, silent=2)

    assert run(Seeder(guard, kafka.start_offset, retry_s=0.01).seed(0, wait=True)) is True

    assert kafka.asked == [0, 0, 0] and guard.expected(0) == 5


def test_the_timer_leaves_an_unanswered_seed_to_its_next_tick() -> None:
    guard, kafka = OffsetGuard({}), Kafka({0: 5}, silent=1)
    seeder = Seeder(guard, kafka.start_offset, retry_s=60)

    assert run(seeder.seed(0, wait=False)) is False
    assert guard.needs_seed(0)
    assert run(seeder.seed(0, wait=False)) is True
    assert guard.expected(0) == 5


# -- OrderedApply -----------------------------------------------------------------------------


class Log:
    """A partition of `hits` as a direct reader sees it: offset -> envelope (absent: a marker)."""

    def __init__(self, records: dict[int, Envelope], *, unreadable: int = 0) -> None:
        self.records = records
        self.reads: list[tuple[str, int, int, int]] = []
        self.unreadable = unreadable
        """This many reads first run out of time (Kafka away), as RangeReader.read says it."""

    def read(self, topic: str, partition: int, start: int, end: int) -> list[Envelope]:
        self.reads.append((topic, partition, start, end))
        if self.unreadable:
            self.unreadable -= 1
            raise RangeUnread(f"{topic}: partition {partition} [{start}, {end}) not read to its end in 15s")
        return [self.records[o] for o in range(start, end) if o in self.records]


Acked = list[tuple[str, int, int, int]]


def ordered(world: World, log: Log, starts: dict[int, int]) -> tuple[OrderedApply, dict[str, Any], Acked]:
    """The step, its progress table, and the ranges it acknowledged to the consumer."""
    progress: dict[str, Any] = {}
    acked: Acked = []

    async def acknowledge(topic: str, partition: int, start: int, end: int) -> None:
        acked.append((topic, partition, start, end))

    guard = OffsetGuard(progress)
    step = OrderedApply(
        guard, Seeder(guard, Kafka(starts).start_offset), world.applier, log.read, acknowledge
    )
    return step, progress, acked


def test_a_redelivered_offset_is_applied_once() -> None:
    world, log = World(), Log({})
    step, progress, acked = ordered(world, log, {0: 0})
    first = envelope(make_hit("cam-1", T0), 0)

    run(step.handle(first))
    world.state.clear()  # were it applied again, it would open its episode again
    run(step.handle(first))

    assert len(world.candidates()) == 1 and progress == {"0": 1} and log.reads == []
    assert acked == []  # nothing was skipped: faust acknowledges what it delivered


def test_skipped_offsets_are_read_and_applied_in_order_before_the_event_in_hand() -> None:
    hits = [make_hit("cam-1", T0), make_hit("cam-2", T0), make_hit("cam-3", T0), make_hit("cam-4", T0)]
    # offsets 1 and 3 are transaction markers; the stream delivers 0, then 6
    records = {0: envelope(hits[0], 0), 2: envelope(hits[1], 2), 4: envelope(hits[2], 4)}
    world, log = World(), Log(records)
    step, progress, acked = ordered(world, log, {0: 0})

    run(step.handle(records[0]))
    run(step.handle(envelope(hits[3], 6)))

    assert log.reads == [(HITS, 0, 1, 6)]
    assert [c.ref.camera_id for c in world.candidates()] == ["cam-1", "cam-2", "cam-3", "cam-4"]
    assert progress == {"0": 7}
    assert acked == [(HITS, 0, 1, 6)]  # faust's commits may now pass what it never delivered


def test_skipped_offsets_kafka_will_not_let_be_read_are_waited_for_not_passed() -> None:
    hits = [make_hit("cam-1", T0), make_hit("cam-2", T0), make_hit("cam-3", T0)]
    records = {0: envelope(hits[0], 0), 2: envelope(hits[1], 2)}
    world, log = World(), Log(records)
    step, progress, acked = ordered(world, log, {0: 0})
    run(step.handle(records[0]))
    log.unreadable = 2

    run(step.handle(envelope(hits[2], 4)))  # retried until the read reaches its end

    assert log.reads == [(HITS, 0, 1, 4)] * 3
    assert [c.ref.camera_id for c in world.candidates()] == ["cam-1", "cam-2", "cam-3"]
    assert progress == {"0": 5}
    assert acked == [(HITS, 0, 1, 4)]  # once, after the read that reached its end


def test_first_events_skipped_before_any_was_applied_are_found_from_the_groups_start() -> None:
    first = envelope(make_hit("cam-1", T0), 10)
    world, log = World(), Log({10: first})
    step, progress, acked = ordered(world, log, {0: 10})

    run(step.handle(envelope(make_hit("cam-2", T0), 12)))

    assert log.reads == [(HITS, 0, 10, 12)]
    assert [c.ref.camera_id for c in world.candidates()] == ["cam-1", "cam-2"]
    assert progress == {"0": 13}
    assert acked == [(HITS, 0, 10, 12)]


def test_skipped_offsets_are_acknowledged_only_once_applied() -> None:
    """A skipped hit whose candidate the broker refuses stays unapplied: acknowledging its offset
    would let faust commit past a hit that had no effect."""
    records = {0: envelope(make_hit("cam-1", T0), 0), 1: envelope(make_hit("cam-2", T0), 1)}
    world, log = World(), Log(records)
    step, progress, acked = ordered(world, log, {0: 0})
    world.matches.refuse = True

    with pytest.raises(DeliveryError):
        run(step.handle(envelope(make_hit("cam-3", T0), 2)))

    assert acked == [] and progress.get("0", 0) == 0  # nothing applied, nothing acknowledged


# -- Unstaller --------------------------------------------------------------------------------


class TP(NamedTuple):
    topic: str
    partition: int


class Consumer:
    """What the timer sees of faust's consumer: assignment, log ends, seeks and commits."""

    def __init__(self, ends: dict[int, int | None], *, refuse_commits: bool = False) -> None:
        self.rebalancing = False
        self.ends = ends
        self.seeks: list[tuple[PartitionLike, int]] = []
        self.commits: list[tuple[PartitionLike, int]] = []
        self.refuse_commits = refuse_commits

    def assigned(self) -> list[PartitionLike]:
        return [TP(HITS, p) for p in self.ends]

    def highwater(self, tp: PartitionLike) -> int | None:
        return self.ends[tp.partition]

    async def seek(self, tp: PartitionLike, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, tp: PartitionLike, offset: int) -> None:
        if self.refuse_commits:
            raise RuntimeError("not the coordinator")
        self.commits.append((tp, offset))


def unstaller(
    consumer: Consumer, log: Log, kafka: Kafka, progress: dict[str, Any]
) -> tuple[Unstaller, Clock, OffsetGuard]:
    clock = Clock(100.0)
    guard = OffsetGuard(progress, clock=clock)
    return Unstaller(guard, Seeder(guard, kafka.start_offset), consumer, log.read, stall_s=3), clock, guard


def test_a_partition_whose_last_events_were_skipped_is_sought_back_after_stall_s() -> None:
    consumer = Consumer({0: 9, 1: 4})
    log = Log({7: envelope(make_hit("cam-1", T0), 7)})
    step, clock, _ = unstaller(consumer, log, Kafka({}), {"0": 7, "1": 4})

    run(step.tick())  # the first look starts the idle time
    clock.now += 2
    run(step.tick())
    assert consumer.seeks == [] and log.reads == []
    clock.now += 1
    run(step.tick())

    assert log.reads == [(HITS, 0, 7, 9)]  # partition 1 is at its end
    assert consumer.seeks == [(TP(HITS, 0), 7)] and consumer.commits == []


def test_a_partition_ending_in_markers_only_is_committed_to_its_end_and_then_left_alone() -> None:
    consumer = Consumer({0: 9})
    log = Log({})
    step, clock, _ = unstaller(consumer, log, Kafka({}), {"0": 8})

    run(step.tick())
    clock.now += 3
    run(step.tick())
    clock.now += 30
    run(step.tick())

    assert log.reads == [(HITS, 0, 8, 9)]
    assert consumer.commits == [(TP(HITS, 0), 9)] and consumer.seeks == []


def test_a_stalled_partition_kafka_will_not_let_be_read_is_not_taken_for_quiet() -> None:
    consumer = Consumer({0: 9})
    log = Log({}, unreadable=1)
    step, clock, guard = unstaller(consumer, log, Kafka({}), {"0": 8})

    run(step.tick())
    clock.now += 3
    run(step.tick())  # the read runs out of time: nothing committed, still stalled
    assert consumer.commits == [] and guard.stalled({0: 9}, 0) == {0: 8}
    clock.now += 3
    run(step.tick())

    assert log.reads == [(HITS, 0, 8, 9)] * 2
    assert consumer.commits == [(TP(HITS, 0), 9)]


def test_a_refused_commit_past_markers_does_not_stop_the_timer() -> None:
    consumer = Consumer({0: 9, 1: 9}, refuse_commits=True)
    step, clock, guard = unstaller(consumer, Log({}), Kafka({}), {"0": 8, "1": 8})

    run(step.tick())
    clock.now += 3
    run(step.tick())  # raises nothing

    assert guard.stalled({0: 9, 1: 9}, 0) == {}  # both read and found quiet


def test_nothing_is_looked_at_while_rebalancing_nor_a_partition_kafka_did_not_seed() -> None:
    consumer = Consumer({0: 9, 1: 9})
    log, kafka = Log({}), Kafka({0: 2, 1: 2}, silent=1)
    step, clock, _ = unstaller(consumer, log, kafka, {})

    consumer.rebalancing = True
    run(step.tick())
    assert kafka.asked == []
    consumer.rebalancing = False
    run(step.tick())  # partition 0's seed goes unanswered: left to the next tick
    assert kafka.asked == [0, 1]
    clock.now += 3
    run(step.tick())

    assert kafka.asked == [0, 1, 0]
    assert log.reads == [(HITS, 1, 2, 9)]  # partition 0 was first seen a tick later: not idle yet
    clock.now += 3
    run(step.tick())
    assert sorted(log.reads) == [(HITS, 0, 2, 9), (HITS, 1, 2, 9)]


def test_a_partition_with_no_known_end_is_not_stalled() -> None:
    consumer = Consumer({0: None, 1: 0})
    log = Log({})
    step, clock, _ = unstaller(consumer, log, Kafka({0: 0, 1: 0}), {})

    run(step.tick())
    clock.now += 10
    run(step.tick())

    assert log.reads == [] and consumer.commits == [] and consumer.seeks == []


# -- the faust wiring, and the one private faust call it makes --------------------------------


def test_build_wires_the_agent_to_hits_and_the_two_tables_co_partitioned(tmp_path: Path) -> None:
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t.")
    config = EpisodesConfig(
        kafka=kafka, app_id="t.episodes-app", data_dir=tmp_path, gap_ms=30_000, partitions=3, replication=1
    )
    episodes = EpisodesApp(config)
    app = episodes.build()
    try:
        [agent] = app.agents.values()
        assert agent.name == "t.episodes-app.episodes"
        assert agent.channel.get_topic_name() == "t." + topics.HITS
        assert {name: table.partitions for name, table in app.tables.items()} == {
            "episodes": 3,
            "progress": 3,
        }
        assert [t.changelog_topic.get_topic_name() for t in app.tables.values()] == [
            "t.episodes-app-episodes-changelog",
            "t.episodes-app-progress-changelog",
        ]
        assert len(episodes.readers) == 2
    finally:
        for reader in episodes.readers:
            reader.close()


def test_faust_still_commits_given_offsets_only_through_its_private_commit_offsets() -> None:
    """faust_committed.commit_undelivered calls faust's private `Consumer._commit_offsets(offsets)`,
    because the public `commit` takes topics and commits only offsets faust acknowledged. If
    this fails, faust changed underneath: see whether it now has a public way, or adapt."""
    from faust.transport.consumer import Consumer as FaustConsumer
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

    private = AIOKafkaConsumer._commit_offsets
    assert private is FaustConsumer._commit_offsets
    assert inspect.iscoroutinefunction(private)
    assert list(inspect.signature(private).parameters) == ["self", "offsets", "start_new_transaction"]
    assert list(inspect.signature(AIOKafkaConsumer.commit).parameters) == [
        "self",
        "topics",
        "start_new_transaction",
    ]


def test_faust_commits_past_skipped_hits_once_they_are_acknowledged(tmp_path: Path) -> None:
    """faust_committed.acknowledge_undelivered, on the app's real consumer, in faust's own terms
    (its private bookkeeping: if this fails, faust changed underneath). The group committed 8;
    faust fetched 8 and 9 but never delivered them (the agent read and applied them itself) and
    acknowledged 10: it would commit nothing, ever, until told that 8 and 9 are done."""
    from faust.types import TP as FaustTP

    from facestream.runtime import faust_committed

    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t.")
    config = EpisodesConfig(
        kafka=kafka, app_id="t.episodes-app", data_dir=tmp_path, gap_ms=30_000, partitions=1, replication=1
    )
    episodes = EpisodesApp(config)
    try:
        consumer = episodes.build().consumer
        tp = FaustTP("t." + topics.HITS, 0)
        consumer._committed_offset[tp] = 8
        consumer._acked[tp].append(10)  # what faust's `ack` records for a delivered message
        consumer._acked_index[tp].add(10)
        assert consumer._new_offset(tp) is None  # stuck before the skipped offsets

        run(faust_committed.acknowledge_undelivered(consumer, tp.topic, 0, 8, 10))

        assert consumer._new_offset(tp) == 11
        with pytest.raises(TypeError, match="not a consumer of the fskafka transport"):
            run(faust_committed.acknowledge_undelivered(object(), tp.topic, 0, 8, 10))
    finally:
        for reader in episodes.readers:
            reader.close()
