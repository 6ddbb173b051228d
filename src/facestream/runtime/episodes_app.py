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
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from facestream import codec
from facestream.errors import ConfigError, DeliveryError, FacestreamError, InvalidMessage
from facestream.messages import Candidate
from facestream.runtime import faust_committed, metrics
from facestream.runtime.changelogs import declare_changelogs
from facestream.runtime.faust_import import faust
from facestream.runtime.faust_kafka import faust_brokers, faust_credentials, faust_envelope
from facestream.runtime.offset_guard import OffsetGuard, Verdict
from facestream.runtime.runner import dlq_headers
from facestream.settings import KafkaSettings, MatcherSettings
from facestream.stages.episodes import EpisodeTracker, Opening
from facestream.transport import topics
from facestream.transport.base import Envelope
from facestream.transport.kafka import RangeReader, client_config, find_key, group_start_offset

log = logging.getLogger(__name__)

STAGE = "episodes"
TABLE = "episodes"
PROGRESS = "progress"
STALL_S = 3.0
"""A partition with unapplied input and no event for this long had its last events skipped."""
SEED_RETRY_S = 1.0
"""How soon to ask Kafka again where the group starts a partition, when it did not answer."""
EXPIRE_EVERY_S = 60.0
"""How often, per partition, episodes past their time to live are looked for."""
READBACK_MARGIN_MS = 60_000
"""Looking for an unconfirmed candidate in `matches`, start this much before its episode opened."""
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


class EpisodesApp:
    """The faust app; build and run it inside the event loop that will own it."""

    def __init__(self, config: EpisodesConfig) -> None:
        self.config = config
        self.failure: BaseException | None = None
        self.readers: list[RangeReader] = []

    def build(self) -> faust.App:
        config = self.config
        prefix = config.kafka.topic_prefix
        app = faust.App(
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
        hits = app.topic(prefix + topics.HITS, key_serializer="raw", value_serializer="raw")
        matches = app.topic(prefix + topics.MATCHES, key_serializer="raw", value_serializer="raw")
        dead = app.topic(prefix + topics.dlq(STAGE), key_serializer="raw", value_serializer="raw")

        def json_table(name: str, help: str) -> Any:
            schema: Any = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
            return app.Table(name, default=None, partitions=config.partitions, schema=schema, help=help)

        episodes_table = json_table(TABLE, "open episodes: identity\\x1fcamera -> first/last seen, candidate")
        guard = OffsetGuard(json_table(PROGRESS, "hits partition -> next offset to apply"))
        tracker = EpisodeTracker(episodes_table, gap_ms=config.gap_ms)
        swept: dict[int, float] = {}
        # Direct readers of `hits`, one per caller (the agent, the timer): each call is blocking.
        gap_reader, stall_reader = RangeReader(config.kafka), RangeReader(config.kafka)
        self.readers = [gap_reader, stall_reader]

        async def publish(topic: faust.TopicT, value: bytes, key: bytes | None, headers: Any = None) -> None:
            # force: send now, not at the next commit, so the ack below follows delivery.
            sent = await topic.send(key=key, value=value, headers=headers, force=True)
            await sent

        async def published_before(opening: Opening) -> bool:
            """A repeat: is its candidate in `matches` already (a crash after publishing it)?"""
            since = opening.opened_at_ms - READBACK_MARGIN_MS
            found = await asyncio.to_thread(
                find_key, config.kafka, matches.get_topic_name(), opening.candidate.key, since
            )
            log.info(
                "%s: candidate %s of an unconfirmed episode is %s",
                STAGE,
                opening.candidate.candidate_id,
                "already in matches: not published again" if found else "not in matches: publishing it",
            )
            return found

        async def emit(candidate: Candidate) -> None:
            await publish(matches, codec.MATCHES.encode(candidate), candidate.key)
            metrics.CANDIDATES.inc()
            metrics.OUTPUTS.labels(STAGE).inc()
            metrics.FRAME_TO_CANDIDATE_SECONDS.observe(
                max(0.0, time.time() - candidate.ref.captured_at_ms / 1000)
            )

        async def process(env: Envelope) -> None:
            try:
                hit = codec.HITS.decode(env.value)
            except InvalidMessage as error:
                await publish(dead, env.value, env.key, list(dlq_headers(STAGE, env, error)))
                metrics.DLQ.labels(STAGE, error.reason).inc()
                metrics.MESSAGES.labels(STAGE, "dlq").inc()
                log.warning("%s: %s/%d@%d to the DLQ: %s", STAGE, env.topic, env.partition, env.offset, error)
                return
            opening = tracker.track(hit, env.partition)
            if opening is not None:
                if opening.repeat:
                    already = await published_before(opening)
                else:
                    await app.producer.flush()  # the unconfirmed opening is durable before the candidate
                    already = False
                if not already:
                    await emit(opening.candidate)
                tracker.confirm(hit)
            metrics.MESSAGES.labels(STAGE, "ok").inc()
            expire(env.partition)

        def expire(partition: int) -> None:
            """Now and then, delete this partition's episodes unseen for the time to live (only
            the event's own partition: a table deletes through that partition's changelog)."""
            now = time.monotonic()
            if now - swept.setdefault(partition, now) < EXPIRE_EVERY_S:
                return
            swept[partition] = now
            gone = tracker.expire(int(time.time() * 1000) - config.ttl_ms, partition)
            if gone:
                log.info("%s: forgot %d episode(s) of partition %d unseen for %ds", STAGE, gone, partition,
                         config.ttl_ms // 1000)  # fmt: skip

        async def apply(env: Envelope) -> None:
            await process(env)
            guard.done(env.partition, env.offset)

        async def episodes(stream: faust.StreamT[bytes]) -> None:
            # ack only after delivery: a failure leaves the hit uncommitted
            manual = cast(faust.Stream[bytes], stream).noack()
            async for event in manual.events():
                env = faust_envelope(event.message)
                try:
                    await seed(env.partition, wait=True)
                    verdict = guard.check(env.partition, env.offset)
                    if verdict is Verdict.GAP:
                        await apply_skipped(env)
                    if verdict is not Verdict.DUPLICATE:
                        await apply(env)
                except Exception as exc:
                    log.exception("%s: stopping on an error; the hit stays uncommitted", STAGE)
                    self.failure = exc
                    await app.crash(exc)
                    return
                await manual.ack(event)

        async def apply_skipped(env: Envelope) -> None:
            """Offsets before `env` were not delivered: read them directly and apply them in order.
            Usually they hold nothing (transaction markers); a message found there was skipped."""
            start = cast(int, guard.expected(env.partition))
            missed = await asyncio.to_thread(gap_reader.read, env.topic, env.partition, start, env.offset)
            if missed:
                log.warning(
                    "%s: %s/%d: the stream skipped %d hit(s) at offsets %d..%d; applying them",
                    STAGE, env.topic, env.partition, len(missed), start, env.offset - 1,
                )  # fmt: skip
            for skipped in missed:
                await apply(skipped)

        async def seed(partition: int, *, wait: bool) -> bool:
            """Nothing of this partition applied yet (a new app, new partitions, a rebalance):
            start from where the group reads it, so that skipped first events count as skipped.

            Kafka may not answer (a broker restarting right after the rebalance it caused): with
            `wait` (the event in hand needs it) ask again until it does; without (the timer) try
            at the next tick. False when the partition is still unseeded."""
            while guard.needs_seed(partition):
                try:
                    start = await asyncio.to_thread(
                        group_start_offset, config.kafka, config.app_id, hits.get_topic_name(), partition
                    )
                except DeliveryError as exc:
                    log.warning("%s: %s; %s", STAGE, exc, "asking again" if wait else "at the next tick")
                    if not wait:
                        return False
                    await asyncio.sleep(SEED_RETRY_S)
                    continue
                guard.seed(partition, start)
            return True

        async def unstall() -> None:
            """Last events of a partition skipped (nothing after them to reveal it): seek back.
            A partition that ends in transaction markers only is merely quiet."""
            if app.rebalancing:
                return
            mine = [tp for tp in app.consumer.assignment() if tp.topic == hits.get_topic_name()]
            mine = [tp for tp in mine if await seed(tp.partition, wait=False)]
            ends = {tp.partition: app.consumer.highwater(tp) for tp in mine}
            for partition, start in guard.stalled(
                {p: e for p, e in ends.items() if e and e > 0}, STALL_S
            ).items():
                tp = next(tp for tp in mine if tp.partition == partition)
                end = ends[partition]
                guard.touch(partition)
                found = await asyncio.to_thread(stall_reader.read, tp.topic, partition, start, end)
                if not found:
                    guard.quiet(partition, end)
                    await commit_past_markers(tp, end)
                    continue
                log.warning("%s: %s: offsets from %d were not delivered; reading again", STAGE, tp, start)
                await app.consumer.seek(tp, start)

        async def commit_past_markers(tp: Any, end: int) -> None:
            """faust commits only offsets it delivered: a partition whose last records are
            transaction markers would stay one behind its end at rest (a lag that never clears)."""
            try:
                await cast(Any, app.consumer)._commit_offsets({tp: end})
            except Exception as exc:  # only the lag figure suffers; the next hit's commit moves on
                log.debug("%s: %s: committing past its markers failed: %s", STAGE, tp, exc)

        app.agent(hits, name=f"{config.app_id}.episodes")(episodes)
        app.timer(STALL_S / 2, name=f"{config.app_id}.unstall")(unstall)
        return app

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
