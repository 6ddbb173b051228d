"""hits → matches in Kafka mode: a faust agent over `hits` whose episode state is a faust Table.

The episode logic is the plain `EpisodeTracker` the embedded mode runs; here its state
mapping is a Table backed by a compacted changelog topic, so a restarted matcher recovers
every open episode before it reads another hit, and does not open a second candidate for an
episode it already reported. faust stays off the frame path: hits are few.

Exactly once in `matches`, across crashes. faust commits a hit's offset only after it has
flushed the table changelog, so a crash redelivers hits, and the order of the writes for
an opening hit decides what a redelivery finds:
1. the tracker records the episode as opened but unconfirmed, and the changelog is flushed;
2. the candidate is published, and its acknowledgement awaited;
3. the tracker marks the episode confirmed (changelog, flushed before the next commit).
A crash before 1 is durable leaves no trace: the candidate was not published, and the
redelivered hit opens it normally. A crash after 1 leaves an unconfirmed episode: the
redelivered hit is a repeat, and the candidate is looked for in `matches` (from the time
the episode was opened) and published only if it is not there. After 3, a repeat opens
nothing. Replayed hits fall in the episodes the state remembers and open nothing; no hit's
timestamp, however wrong, hides another's candidate (stages/episodes.py).

faust itself may deliver a hit twice or skip one while it starts with a backlog (see
offset_guard.py): a second table records the next offset to apply per partition, so
duplicates are dropped and skipped offsets are read directly from Kafka and applied in order.
Episodes not seen for `--episode-ttl-s` are deleted from the table as hits of their
partition arrive, so the state stays bounded.

The steps themselves live in episodes_steps.py and know nothing of faust (each is tested on
its own); this module builds the faust app and wires them to its topics, tables, agent, timer
and consumer, all through faust's public API but two calls (`FaustHitsConsumer.commit` and
`.acknowledge_undelivered`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from facestream.errors import ConfigError, FacestreamError
from facestream.runtime import faust_committed
from facestream.runtime.changelogs import declare_changelogs
from facestream.runtime.episodes_steps import (
    STAGE,
    STALL_S,
    CandidateOutput,
    EndReporter,
    Expiry,
    HitApplier,
    OrderedApply,
    PartitionLike,
    Seeder,
    Unstaller,
)
from facestream.runtime.faust_import import faust
from facestream.runtime.faust_kafka import faust_brokers, faust_credentials, faust_envelope
from facestream.runtime.offset_guard import OffsetGuard
from facestream.settings import KafkaSettings, MatcherSettings
from facestream.stages.episodes import EpisodeTracker
from facestream.transport import topics
from facestream.transport.base import Headers
from facestream.transport.kafka import RangeReader, client_config, find_key, group_start_offset

log = logging.getLogger(__name__)

TABLE = "episodes"
PROGRESS = "progress"
END_CHECK_S = 1.0
"""How often the episodes gone quiet are looked for (a scan of this worker's part of the table)."""
FAUST_LOGGERS = ("faust", "mode", "aiokafka", "kafka")


class EpisodesFailed(FacestreamError):
    """The episode step stopped on an error; the process exits non-zero so it is restarted."""


@dataclass(frozen=True, slots=True)
class EpisodesConfig:
    """Everything the faust app needs, resolved before it starts."""

    kafka: KafkaSettings
    app_id: str
    data_dir: Path
    gap_ms: int
    partitions: int
    """Of `hits`; the table's changelog must match it (faust co-partitions them)."""
    replication: int
    """Of `hits`; the changelog gets the same."""
    ttl_ms: int = 3_600_000
    """Episodes unseen (wall clock) for this long are deleted."""
    instance_id: str | None = None
    """Static group membership (the replica's stable name): a restart takes its partitions back at once."""

    @classmethod
    def resolve(
        cls, kafka: KafkaSettings, matcher: MatcherSettings, replica_id: str | None = None
    ) -> EpisodesConfig:
        partitions, replication = topic_layout(kafka, kafka.topic_prefix + topics.HITS)
        topic_layout(kafka, kafka.topic_prefix + topics.EPISODES_ENDED)  # a one-line error, not a crash loop
        return cls(
            kafka=kafka,
            app_id=matcher.episodes_app_id or f"{kafka.topic_prefix}facestream-episodes",
            data_dir=matcher.episodes_data_dir or Path(tempfile.gettempdir()) / "facestream-episodes",
            gap_ms=round(matcher.episode_gap_s * 1000),
            partitions=partitions,
            replication=replication,
            ttl_ms=round(matcher.episode_ttl_s * 1000),
            instance_id=replica_id,
        )


def topic_layout(kafka: KafkaSettings, topic: str, timeout_s: float = 30) -> tuple[int, int]:
    """(partitions, replicas) of an existing topic; a missing one is a one-line ConfigError."""
    try:
        metadata = AdminClient(client_config(kafka)).list_topics(topic=topic, timeout=timeout_s)
    except KafkaException as exc:
        where = kafka.bootstrap_servers
        raise FacestreamError(f"cannot read metadata of {topic} from {where}: {exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise ConfigError(f"topic {topic} does not exist; create the topics first (facestream topics create)")
    return len(found.partitions), max(1, len(found.partitions[0].replicas))


def quiet_faust_logging(level: int = logging.WARNING) -> None:
    for name in FAUST_LOGGERS:
        logging.getLogger(name).setLevel(level)


def new_faust_app(config: EpisodesConfig) -> faust.App:
    """The faust app itself: read_committed `hits`, state in memory restored from changelogs."""
    return faust.App(
        config.app_id,
        broker=faust_brokers(config.kafka, faust_committed.SCHEME),  # hits are transactional
        broker_credentials=faust_credentials(config.kafka),
        broker_client_id=config.kafka.client_id,
        store="memory://",  # the changelog is the state; a restart replays it
        datadir=str(config.data_dir),
        web_enabled=False,  # metrics and health are served by the service's own port
        autodiscover=False,
        topic_replication_factor=config.replication,
        topic_partitions=config.partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=True,  # on stop, finish the event in hand before committing
        producer_acks=-1,
        consumer_group_instance_id=config.instance_id,
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of bytes: our codecs, not faust's, read and write the records."""
    return app.topic(name, key_serializer="raw", value_serializer="raw")


def json_table(app: faust.App, name: str, partitions: int, help: str) -> Any:
    """A table of JSON values by string key (None when absent), co-partitioned with `hits`."""
    schema: Any = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
    return app.Table(name, default=None, partitions=partitions, schema=schema, help=help)


class TopicSender:
    """Publishes to one faust topic now (not at the next commit) and waits for the broker's
    acknowledgement, so that what the caller does next follows delivery (episodes_steps.Send)."""

    def __init__(self, topic: faust.TopicT) -> None:
        self.topic = topic

    async def __call__(self, value: bytes, key: bytes | None, headers: Headers) -> None:
        sent = await self.topic.send(key=key, value=value, headers=list(headers) or None, force=True)
        await sent


class TableWriter:
    """stages.episodes.StateWrite for a faust table, from a timer: inside an agent faust takes the
    changelog's partition from the event in hand, which a timer has none of. So this sets the local
    copy and sends the changelog record to the partition named, as the table's own __setitem__ does
    in an agent (faust's public Collection.data and send_changelog)."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __call__(self, key: str, record: dict[str, Any], partition: int) -> None:
        self._table.data[key] = record
        self._table.send_changelog(partition, key, record)


class HitsAgent:
    """The faust agent over `hits`: each event through `OrderedApply`, acknowledged only after
    it was applied, so a failure leaves the hit uncommitted; the first error crashes the app."""

    def __init__(self, app: faust.App, step: OrderedApply, failed: Callable[[BaseException], None]) -> None:
        self._app = app
        self._step = step
        self._failed = failed

    async def consume(self, stream: faust.StreamT[bytes]) -> None:
        manual = cast(faust.Stream[bytes], stream).noack()
        async for event in manual.events():
            env = faust_envelope(event.message)
            try:
                await self._step.handle(env)
            except Exception as exc:
                log.exception("%s: stopping on an error; the hit stays uncommitted", STAGE)
                self._failed(exc)
                await self._app.crash(exc)
                return
            await manual.ack(event)


class FaustHitsConsumer:
    """faust's consumer as the timer sees it (episodes_steps.HitsConsumer): `hits` only.

    All public faust API but `commit`, which must pass transaction markers faust never delivers,
    and `acknowledge_undelivered`, for hits it skipped: faust_committed, with the private API
    they need and why."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self._app = app
        self._topic = topic

    @property
    def rebalancing(self) -> bool:
        return bool(self._app.rebalancing)

    def assigned(self) -> list[PartitionLike]:
        return [tp for tp in self._app.consumer.assignment() if tp.topic == self._topic]

    def highwater(self, tp: PartitionLike) -> int | None:
        return cast(int | None, self._app.consumer.highwater(cast(Any, tp)))

    async def seek(self, tp: PartitionLike, offset: int) -> None:
        await self._app.consumer.seek(cast(Any, tp), offset)

    async def commit(self, tp: PartitionLike, offset: int) -> None:
        await faust_committed.commit_undelivered(self._app.consumer, tp, offset)

    async def acknowledge_undelivered(self, topic: str, partition: int, start: int, end: int) -> None:
        """episodes_steps.Acknowledge, for the agent's skipped offsets."""
        await faust_committed.acknowledge_undelivered(self._app.consumer, topic, partition, start, end)


class EpisodesApp:
    """The faust app; build and run it inside the event loop that will own it."""

    def __init__(self, config: EpisodesConfig) -> None:
        self.config = config
        self.failure: BaseException | None = None
        self.readers: list[RangeReader] = []

    def build(self) -> faust.App:
        """The app with its topics, tables, agent and timer, wired to the steps of
        episodes_steps.py; nothing is started or connected yet."""
        config = self.config
        app = new_faust_app(config)
        prefix = config.kafka.topic_prefix
        hits, matches, ended, dead = (
            raw_topic(app, prefix + name)
            for name in (topics.HITS, topics.MATCHES, topics.EPISODES_ENDED, topics.dlq(STAGE))
        )
        episodes_table = json_table(
            app, TABLE, config.partitions, "open episodes: identity\\x1fcamera -> first/last seen, candidate"
        )
        guard = OffsetGuard(
            json_table(app, PROGRESS, config.partitions, "hits partition -> next offset to apply")
        )
        tracker = EpisodeTracker(episodes_table, gap_ms=config.gap_ms, write=TableWriter(episodes_table))
        # Direct readers of `hits`, one per caller (the agent, the timer): each call is blocking.
        gap_reader, stall_reader = RangeReader(config.kafka), RangeReader(config.kafka)
        self.readers = [gap_reader, stall_reader]
        seeder = Seeder(
            guard, functools.partial(group_start_offset, config.kafka, config.app_id, hits.get_topic_name())
        )
        applier = HitApplier(
            tracker,
            CandidateOutput(
                TopicSender(matches), functools.partial(find_key, config.kafka, matches.get_topic_name())
            ),
            dead_letter=TopicSender(dead),
            flush_state=lambda: app.producer.flush(),
            expiry=Expiry(tracker, config.ttl_ms),
        )
        hits_consumer = FaustHitsConsumer(app, hits.get_topic_name())
        agent = HitsAgent(
            app,
            OrderedApply(guard, seeder, applier, gap_reader.read, hits_consumer.acknowledge_undelivered),
            self._failed,
        )
        unstaller = Unstaller(guard, seeder, hits_consumer, stall_reader.read)
        reporter = EndReporter(tracker, TopicSender(ended), lambda: app.producer.flush())

        async def report_ends() -> None:
            if not hits_consumer.rebalancing:  # the assignment is about to change
                await reporter.tick({tp.partition for tp in hits_consumer.assigned()})

        app.agent(hits, name=f"{config.app_id}.episodes")(agent.consume)
        app.timer(STALL_S / 2, name=f"{config.app_id}.unstall")(unstaller.tick)
        app.timer(END_CHECK_S, name=f"{config.app_id}.ends")(report_ends)
        return app

    def _failed(self, exc: BaseException) -> None:
        self.failure = exc

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set or faust crashes, then stop (which commits)."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        app = self.build()
        await asyncio.to_thread(declare_changelogs, self.config.kafka, app)
        await app.start()
        log.info(
            "%s: %s -> %s (app %s, %d partitions)",
            STAGE,
            self.config.kafka.topic_prefix + topics.HITS,
            self.config.kafka.topic_prefix + topics.MATCHES,
            self.config.app_id,
            self.config.partitions,
        )
        stopped = asyncio.ensure_future(stop.wait())
        crashed = asyncio.ensure_future(app.wait_until_stopped())
        try:
            await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopped, crashed):
                waiter.cancel()
            await app.stop()
            for reader in self.readers:
                reader.close()
        failure = self.failure or app.crash_reason
        if failure is not None:
            raise EpisodesFailed(f"{STAGE}: {failure}") from failure
