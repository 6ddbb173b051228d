"""hits → matches in Kafka mode: a faust agent over `hits` whose episode state is a faust Table.

The episode logic is the plain `EpisodeStage`/`EpisodeTracker` the embedded mode runs; here
its state mapping is a Table backed by a compacted changelog topic, so a restarted matcher
recovers every open episode before it reads another hit, and does not open a second
candidate for an episode it already reported. faust stays off the frame path: hits are few.

Delivery: each event is acknowledged only after its candidate (or dead letter) is
acknowledged by the broker, and faust flushes the table's changelog before it commits
offsets. A crash therefore redelivers the hit, and the tracker answers a redelivered
opening hit with the same candidate id. faust itself may deliver a hit twice or skip one
while it starts with a backlog (see offset_guard.py): a second table records the next
offset to apply per partition, so duplicates are dropped and skipped offsets are read
directly from Kafka and applied in order.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from facestream import codec
from facestream.errors import ConfigError, FacestreamError, InvalidMessage
from facestream.runtime import metrics
from facestream.runtime.faust_import import faust
from facestream.runtime.offset_guard import OffsetGuard, Verdict
from facestream.runtime.runner import dlq_headers
from facestream.settings import KafkaSettings, MatcherSettings
from facestream.stages.episodes import EpisodeStage, EpisodeTracker
from facestream.transport import topics
from facestream.transport.base import Envelope
from facestream.transport.kafka import client_config, read_range

log = logging.getLogger(__name__)

STAGE = "episodes"
TABLE = "episodes"
PROGRESS = "progress"
STALL_S = 3.0
"""A partition with unapplied input and no event for this long had its last events skipped."""
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

    @classmethod
    def resolve(cls, kafka: KafkaSettings, matcher: MatcherSettings) -> EpisodesConfig:
        partitions, replication = topic_layout(kafka, kafka.topic_prefix + topics.HITS)
        return cls(
            kafka=kafka,
            app_id=matcher.episodes_app_id or f"{kafka.topic_prefix}facestream-episodes",
            data_dir=matcher.episodes_data_dir or Path(tempfile.gettempdir()) / "facestream-episodes",
            gap_ms=round(matcher.episode_gap_s * 1000),
            partitions=partitions,
            replication=replication,
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


def faust_brokers(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip()]


def faust_credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """The same security settings the confluent clients use, in faust's terms."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if "SSL" in protocol:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
        )
        if kafka.ssl_certificate_location:
            context.load_cert_chain(
                str(kafka.ssl_certificate_location),
                str(kafka.ssl_key_location) if kafka.ssl_key_location else None,
            )
    if "SASL" not in protocol:
        return faust.SSLCredentials(context)
    if not kafka.sasl_username or kafka.sasl_password is None:
        raise ConfigError("SASL needs both sasl_username and sasl_password")
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


def quiet_faust_logging(level: int = logging.WARNING) -> None:
    for name in FAUST_LOGGERS:
        logging.getLogger(name).setLevel(level)


def _envelope(message: Any) -> Envelope:
    """A faust message as the transport's Envelope (for DLQ origin headers)."""
    headers = tuple((k, v or b"") for k, v in (message.headers or ()))
    return Envelope(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        headers=headers,
        timestamp_ms=round((message.timestamp or 0) * 1000),
    )


class EpisodesApp:
    """The faust app; build and run it inside the event loop that will own it."""

    def __init__(self, config: EpisodesConfig) -> None:
        self.config = config
        self.failure: BaseException | None = None

    def build(self) -> faust.App:
        config = self.config
        prefix = config.kafka.topic_prefix
        app = faust.App(
            config.app_id,
            broker=faust_brokers(config.kafka),
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
        )
        hits = app.topic(prefix + topics.HITS, key_serializer="raw", value_serializer="raw")
        matches = app.topic(prefix + topics.MATCHES, key_serializer="raw", value_serializer="raw")
        dead = app.topic(prefix + topics.dlq(STAGE), key_serializer="raw", value_serializer="raw")

        def json_table(name: str, help: str) -> Any:
            schema: Any = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
            return app.Table(name, default=None, partitions=config.partitions, schema=schema, help=help)

        episodes_table = json_table(TABLE, "open episodes: identity\\x1fcamera -> first/last seen, candidate")
        guard = OffsetGuard(json_table(PROGRESS, "hits partition -> next offset to apply"))
        stage = EpisodeStage(EpisodeTracker(episodes_table, gap_ms=config.gap_ms))

        async def publish(topic: faust.TopicT, value: bytes, key: bytes | None, headers: Any = None) -> None:
            # force: send now, not at the next commit, so the ack below follows delivery.
            sent = await topic.send(key=key, value=value, headers=headers, force=True)
            await sent

        async def process(env: Envelope) -> None:
            try:
                hit = codec.HITS.decode(env.value)
            except InvalidMessage as error:
                await publish(dead, env.value, env.key, list(dlq_headers(STAGE, env, error)))
                metrics.DLQ.labels(STAGE, error.reason).inc()
                metrics.MESSAGES.labels(STAGE, "dlq").inc()
                log.warning("%s: %s/%d@%d to the DLQ: %s", STAGE, env.topic, env.partition, env.offset, error)
                return
            outcome = stage.process([hit])[0]
            assert not isinstance(outcome, InvalidMessage)  # the tracker accepts every decoded hit
            for candidate in outcome:
                await publish(matches, codec.MATCHES.encode(candidate), candidate.key)
                metrics.FRAME_TO_CANDIDATE_SECONDS.observe(
                    max(0.0, time.time() - candidate.ref.captured_at_ms / 1000)
                )
            metrics.MESSAGES.labels(STAGE, "ok").inc()
            metrics.OUTPUTS.labels(STAGE).inc(len(outcome))

        async def apply(env: Envelope) -> None:
            await process(env)
            guard.done(env.partition, env.offset)

        async def episodes(stream: faust.StreamT[bytes]) -> None:
            # ack only after delivery: a failure leaves the hit uncommitted
            manual = cast(faust.Stream[bytes], stream).noack()
            async for event in manual.events():
                env = _envelope(event.message)
                verdict = guard.check(env.partition, env.offset)
                try:
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
            """The stream skipped offsets before `env`: read them directly, apply them in order."""
            start = cast(int, guard.expected(env.partition))
            log.warning(
                "%s: %s/%d: the stream skipped offsets %d..%d; reading them directly",
                STAGE, env.topic, env.partition, start, env.offset - 1,
            )  # fmt: skip
            missed = await asyncio.to_thread(
                read_range, config.kafka, env.topic, env.partition, start, env.offset
            )
            if len(missed) != env.offset - start:
                log.error(
                    "%s: %d of offsets %d..%d are gone",
                    STAGE,
                    env.offset - start - len(missed),
                    start,
                    env.offset - 1,
                )
            for skipped in missed:
                await apply(skipped)

        async def unstall() -> None:
            """Last events of a partition skipped (nothing after them to reveal it): seek back."""
            if app.rebalancing:
                return
            mine = [tp for tp in app.consumer.assignment() if tp.topic == hits.get_topic_name()]
            ends = {tp.partition: app.consumer.highwater(tp) for tp in mine}
            for partition, start in guard.stalled(
                {p: e for p, e in ends.items() if e and e > 0}, STALL_S
            ).items():
                tp = next(tp for tp in mine if tp.partition == partition)
                log.warning("%s: %s: offsets from %d were not delivered; reading again", STAGE, tp, start)
                guard.touch(partition)
                await app.consumer.seek(tp, start)

        app.agent(hits, name=f"{config.app_id}.episodes")(episodes)
        app.timer(STALL_S / 2, name=f"{config.app_id}.unstall")(unstall)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set or faust crashes, then stop (which commits)."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        app = self.build()
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
        failure = self.failure or app.crash_reason
        if failure is not None:
            raise EpisodesFailed(f"{STAGE}: {failure}") from failure
