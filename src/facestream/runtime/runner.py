"""The processing loop every consuming stage runs, on any transport.

One batch goes through these steps, in this order, and only in this order:

1. poll up to `batch_size` messages, waiting at most `batch_timeout`;
2. decode each; one that does not decode is dead-lettered, not fatal; one larger than any
   facestream producer writes (`MAX_RECORD_BYTES`) is dead-lettered undecoded, its payload cut;
3. run the stage over the decoded batch (one outcome per input);
4. open the commit (on Kafka: begin a transaction), then produce every output, and every
   dead letter with its origin headers;
5. flush the producer: if anything is unacknowledged, raise, and commit nothing;
6. commit the batch's offsets: the explicit last step, done by the commit strategy
   (transport.base.CommitStrategy). In-process, the consumer commits (at-least-once). On Kafka the
   offsets join the transaction, which then commits together with the outputs: downstream
   (read_committed) sees a batch's outputs exactly once, or not at all.

So a crash anywhere before step 6 redelivers the whole batch, and nothing of it was visible
downstream (Kafka), or the stable ids on every message make the repeat harmless (in-process).
If steps 4-6 fail, the strategy rolls back: the transaction is aborted, the consumer rewound
to the batch's first offsets, and the batch processed again after a pause; a strategy that
cannot roll back (in-process) raises instead. If the stage raises `GalleryUnavailable`, the
consumer is paused and the same batch retried with backoff until it succeeds: nothing is
committed and nothing is skipped meanwhile. If a rebalance takes partitions of the batch in
hand meanwhile, the batch is dropped uncommitted (and rewound): the new owner processes it.

A record Kafka refuses for what it is (too large, invalid: `RecordRefused`) would be refused
on every retry, so it must not roll the batch back forever. Inside a transaction the refusal
leaves the transaction fit only to abort, so the batch is rolled back once, at once, and the
refused record's input remembered: processed again, that input is dead-lettered instead
(`output_too_large`, `output_refused`). A refused dead letter is written again with its payload
cut (`fs.dlq.payload: truncated`), then without it (`omitted`); the origin headers always stay.
Kafka refuses whole batches, so a refusal shared by several records names none of them for sure:
their inputs are sent one record at a time on the next try, to find the culprit (`_Attempt`).
Transient failures (a broker away, timeouts) roll back and retry as before.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Generic, Literal, Protocol, TypeVar

from facestream.codec import Codec
from facestream.errors import DeliveryError, FacestreamError, GalleryUnavailable, InvalidMessage
from facestream.runtime import metrics
from facestream.runtime.commit import AtLeastOnce
from facestream.runtime.health import Health
from facestream.runtime.logs import ContextLog
from facestream.runtime.stall import StallWatch
from facestream.stages.base import Stage
from facestream.transport.base import (
    CommitStrategy,
    Consumer,
    Envelope,
    Headers,
    Producer,
    RecordRefused,
    Refusal,
    Rejoining,
    ReportsLag,
    ReportsPositions,
    TopicPartition,
    next_offsets,
)
from facestream.transport.topics import DEAD_LETTER_KEEP_BYTES, MAX_RECORD_BYTES

log = logging.getLogger(__name__)


class Keyed(Protocol):
    @property
    def key(self) -> bytes: ...


I = TypeVar("I")  # noqa: E741
O = TypeVar("O", bound=Keyed)  # noqa: E741


class TooManyInvalid(FacestreamError):
    """Most recent input is invalid: likely a bad deploy upstream, so stop rather than drain
    the whole topic into the dead-letter queue."""


class Interrupted(FacestreamError):
    """Shutdown was requested while a batch was waiting; it is left uncommitted."""


class Revoked(FacestreamError):
    """A rebalance took partitions of the batch in hand while it waited; the new owner redoes it."""


class DeadLetterRefused(FacestreamError):
    """Kafka refuses even a dead letter without payload: the dead-letter topic is misconfigured
    (it refuses every record, not one), which only an operator can fix."""


RECORD_TOO_LARGE = "record_too_large"
"""DLQ reason of an input larger than `MAX_RECORD_BYTES` (it came from another producer)."""
OUTPUT_TOO_LARGE = "output_too_large"
"""DLQ reason of an input whose output Kafka refused as too large."""
OUTPUT_REFUSED = "output_refused"
"""DLQ reason of an input whose output Kafka refused for another reason of its own (INVALID_RECORD)."""

Payload = Literal["whole", "truncated", "omitted"]
"""How much of the input a dead letter carries: all, its first `DEAD_LETTER_KEEP_BYTES`, nothing."""
_SMALLER: dict[Payload, Payload] = {"whole": "truncated", "truncated": "omitted"}
_OMITTED_KEY_BYTES = 256
"""What a letter without payload keeps of the key (a camera id fits; the key may be what was too large)."""


@dataclass(frozen=True, slots=True)
class Route(Generic[I, O]):
    """Where a stage reads and writes, and how its messages are (de)serialised."""

    input_topic: str
    input_codec: Codec[I]
    output_topic: str
    output_codec: Codec[O]
    dlq_topic: str


@dataclass(frozen=True, slots=True)
class LoopPolicy:
    batch_size: int = 32
    batch_timeout_s: float = 0.05
    flush_timeout_s: float = 30.0
    max_invalid_ratio: float = 0.5
    invalid_window: int = 1000
    invalid_min_sample: int = 100
    lag_interval_s: float = 15.0
    wait_for_gallery: bool = True
    """Pause and retry while the gallery is unavailable (services); False re-raises (embedded)."""
    retry_max_s: float = 10.0
    """Longest pause before a batch is tried again, rolled back or waiting for the gallery (the
    pauses double from 0.5 s up to it). Short, as a pause only bounds the retry rate: a paused
    consumer keeps its group membership, and the first try after the fault ends resumes work."""
    stall_s: float = 120.0
    """Rejoin the group with a new client when the input has not moved for this long while it had
    messages to deliver (runtime/stall.py); 0 turns the watch off."""


def first_offsets(envelopes: Sequence[Envelope]) -> dict[TopicPartition, int]:
    """Where to rewind to read `envelopes` again: the lowest offset per partition."""
    offsets: dict[TopicPartition, int] = {}
    for env in envelopes:
        tp = (env.topic, env.partition)
        offsets[tp] = min(offsets.get(tp, env.offset), env.offset)
    return offsets


def batch_fields(envelopes: Sequence[Envelope]) -> dict[str, object]:
    """A batch's place for a log record: its input topic(s) and the partitions it spans."""
    topics = sorted({env.topic for env in envelopes})
    return {"topic": ",".join(topics), "partitions": sorted({env.partition for env in envelopes})}


def record_bytes(env: Envelope) -> int:
    """What of a record counts against the producers' message.max.bytes (less its framing)."""
    return len(env.key or b"") + len(env.value) + sum(len(k) + len(v) for k, v in env.headers)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input on its way to the dead-letter topic, and how much of it the letter carries."""

    env: Envelope
    error: InvalidMessage
    payload: Payload = "whole"

    def record(self, stage: str) -> tuple[bytes | None, bytes, Headers]:
        """Key, value and headers of the letter: the input's own bytes, all or cut, behind headers
        that say why and where it came from (so a cut payload can be found in the source topic)."""
        headers = dlq_headers(stage, self.env, self.error)
        if self.payload == "whole":
            return self.env.key, self.env.value, headers
        size = (
            ("fs.dlq.payload", self.payload.encode()),
            ("fs.dlq.payload_bytes", str(len(self.env.value)).encode()),
        )
        key = self.env.key
        if self.payload == "truncated":
            key = None if key is None else key[:DEAD_LETTER_KEEP_BYTES]
            return key, self.env.value[:DEAD_LETTER_KEEP_BYTES], headers + size
        return None if key is None else key[:_OMITTED_KEY_BYTES], b"", headers + size


def dlq_headers(stage: str, env: Envelope, error: InvalidMessage) -> Headers:
    """Why and from where: enough to find, understand and replay the original message."""
    return (
        ("fs.dlq.reason", error.reason.encode()),
        ("fs.dlq.detail", error.detail[:500].encode()),
        ("fs.dlq.stage", stage.encode()),
        ("fs.dlq.topic", env.topic.encode()),
        ("fs.dlq.partition", str(env.partition).encode()),
        ("fs.dlq.offset", str(env.offset).encode()),
        ("fs.dlq.timestamp_ms", str(env.timestamp_ms).encode()),
    )


Position = tuple[str, int, int]
"""An input record's topic, partition and offset."""


def _position(what: Envelope | DeadLetter) -> Position:
    env = what if isinstance(what, Envelope) else what.env
    return (env.topic, env.partition, env.offset)


class _Attempt:
    """One attempt at step 4-5: the records sent, in order, and what Kafka refused of them.

    Kafka refuses a whole batch: every record that shared it is reported with the culprit's error.
    So a refusal names its record for sure only when produce() itself refused it (over the
    producer's limit, checked per record), when it was the only refusal of its flush, or when the
    record was sent alone (flushed before and after: the inputs of `suspects` are). The others
    are suspects, sent alone next time. After a refusal found in a flush the transaction can only
    abort, so nothing more is sent.
    """

    def __init__(self, producer: Producer, flush_timeout_s: float, suspects: set[Position]) -> None:
        self._producer = producer
        self._timeout_s = flush_timeout_s
        self._isolate = suspects
        self._alone: set[int] = set()
        self._poisoned = False
        self.sent: list[Envelope | DeadLetter] = []
        """What each produce call was for: an output's input, or a dead letter."""
        self.guilty: list[Refusal] = []
        self.suspects: list[Refusal] = []

    @property
    def refused(self) -> bool:
        return bool(self.guilty or self.suspects)

    def send(
        self, what: Envelope | DeadLetter, topic: str, value: bytes, key: bytes | None, headers: Headers = ()
    ) -> None:
        if self._poisoned:
            return
        alone = _position(what) in self._isolate
        if alone:
            self.flush()
            if self._poisoned:
                return
        index = len(self.sent)
        self.sent.append(what)
        try:
            self._producer.produce(topic, value, key=key, headers=headers)
        except RecordRefused as exc:  # by the producer itself: about this record alone
            self.guilty.extend(exc.refusals)
            return
        if alone:
            self._alone.add(index)
            self.flush()

    def flush(self) -> None:
        try:
            self._producer.flush(self._timeout_s)
        except RecordRefused as exc:
            self._poisoned = True
            for refusal in exc.refusals:
                sure = len(exc.refusals) == 1 or refusal.index in self._alone
                (self.guilty if sure else self.suspects).append(refusal)


class StageRunner(Generic[I, O]):
    def __init__(
        self,
        stage: Stage[I, O],
        route: Route[I, O],
        consumer: Consumer,
        producer: Producer,
        *,
        policy: LoopPolicy | None = None,
        health: Health | None = None,
        stop: threading.Event | None = None,
        commit: CommitStrategy | None = None,
    ) -> None:
        self.stage = stage
        self.route = route
        self.consumer = consumer
        self.producer = producer
        self.policy = policy or LoopPolicy()
        self.health = health or Health()
        self.stop = stop or threading.Event()
        self.commit = commit or AtLeastOnce(consumer)
        self._recent_invalid: deque[bool] = deque(maxlen=self.policy.invalid_window)
        self._last_lag = 0.0
        self._name = stage.name
        self._log = ContextLog(log, {"stage": stage.name})  # fields of JSON logs
        self._in_hand: set[TopicPartition] = set()
        self._revoked_in_hand = False
        self._retry_delay = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._stall_watch = StallWatch(self.policy.stall_s)
        self._last_watch = 0.0
        self._rejoining = consumer if isinstance(consumer, Rejoining) else None
        """The consumer, where its client can be replaced (Kafka): watched for stalls, its rejoins counted."""
        self._fatal_rejoins = self._rejoining.fatal_rejoins if self._rejoining is not None else 0
        self._lag = consumer if isinstance(consumer, ReportsLag) else None
        self._positioned = consumer if isinstance(consumer, ReportsPositions) else None
        self._refused: dict[Position, DeadLetter] = {}
        """Inputs of a rolled-back batch to dead-letter when read again."""
        self._suspects: set[Position] = set()
        """Inputs of a rolled-back batch whose records shared a refused batch: sent alone next time."""
        metrics.INPUT_REJOINS.labels(self._name)  # exported at 0 from the start: increase() sees the first

    def start(self) -> None:
        self.consumer.subscribe([self.route.input_topic], on_revoke=self._on_revoke)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions moved to another replica: forget their lag series; a batch in hand that
        holds any of them must not be committed here."""
        gone = set(partitions)
        self._refused = {at: letter for at, letter in self._refused.items() if at[:2] not in gone}
        self._suspects = {at for at in self._suspects if at[:2] not in gone}
        for topic, partition in partitions:
            self._committed.pop((topic, partition), None)
            with contextlib.suppress(KeyError):  # never reported
                metrics.CONSUMER_LAG.remove(self._name, topic, str(partition))
        if self._in_hand & set(partitions):
            self._revoked_in_hand = True

    def run(self) -> None:
        """Process batches until `stop` is set; the batch in hand is finished and committed."""
        self.start()
        self.health.set_ready(True)
        try:
            while not self.stop.is_set():
                try:
                    self.run_once()
                except Interrupted:
                    break
        finally:
            self.health.set_ready(False)
            self.producer.close()
            self.consumer.close()

    def run_once(self) -> int:
        """One batch through steps 1-6; returns how many input messages it covered (0 when
        the batch was rolled back to be processed again). Then, with no batch in hand, a look
        at whether the input stalled."""
        covered = self._one_batch()
        self._watch_input()
        return covered

    def _one_batch(self) -> int:
        envelopes = self.consumer.consume(self.policy.batch_size, self.policy.batch_timeout_s)
        self._polled()
        if not envelopes:
            self._catch_up()
            return 0
        started = time.perf_counter()
        self._in_hand = {(env.topic, env.partition) for env in envelopes}
        self._revoked_in_hand = False

        decoded: list[tuple[Envelope, I]] = []
        dead: list[DeadLetter] = []
        for env in envelopes:
            if (refused := self._refused.get((env.topic, env.partition, env.offset))) is not None:
                dead.append(refused)
            elif (size := record_bytes(env)) > MAX_RECORD_BYTES:
                detail = f"{size} bytes, over the {MAX_RECORD_BYTES} a facestream producer writes"
                dead.append(DeadLetter(env, InvalidMessage(RECORD_TOO_LARGE, detail), "truncated"))
            else:
                try:
                    decoded.append((env, self.route.input_codec.decode(env.value)))
                except InvalidMessage as exc:
                    dead.append(DeadLetter(env, exc))

        try:
            outcomes = self._process([item for _, item in decoded]) if decoded else []
        except Revoked as exc:
            self._in_hand = set()
            if not self.commit.rollback(first_offsets(envelopes)):
                raise
            self._log.info("%s: %s", self._name, exc)
            return 0
        results: list[tuple[Envelope, list[O]]] = []
        for (env, _), outcome in zip(decoded, outcomes, strict=True):
            if isinstance(outcome, InvalidMessage):
                dead.append(DeadLetter(env, outcome))
            else:
                results.append((env, outcome))
        self._guard_invalid_ratio(len(envelopes), len(dead))

        try:
            self._produce_and_commit(envelopes, results, dead)
        except RecordRefused as exc:
            # Refused again on every retry: roll back at once, and redo the batch without them.
            metrics.ERRORS.labels(self._name, "refused").inc()
            if not self.commit.rollback(first_offsets(envelopes)):
                raise
            self._log.warning(
                "%s: batch of %d rolled back, to be processed again at once without the %d record(s) "
                "Kafka refused (their inputs dead-lettered, a dead letter cut, or sent alone): %s",
                self._name,
                len(envelopes),
                len(exc.refusals),
                exc,
                extra=batch_fields(envelopes),
            )
            return 0
        except DeliveryError as exc:
            metrics.ERRORS.labels(self._name, "delivery").inc()
            if not self.commit.rollback(first_offsets(envelopes)):
                raise
            self._retry_delay = min(max(0.5, self._retry_delay * 2), self.policy.retry_max_s)
            self._log.warning(
                "%s: batch of %d rolled back, to be processed again in %.1fs: %s",
                self._name,
                len(envelopes),
                self._retry_delay,
                exc,
                extra=batch_fields(envelopes),
            )
            self.stop.wait(self._retry_delay)
            return 0
        finally:
            self._in_hand = set()
        self._retry_delay = 0.0

        metrics.MESSAGES.labels(self._name, "ok").inc(len(envelopes) - len(dead))
        if dead:
            metrics.MESSAGES.labels(self._name, "dlq").inc(len(dead))
        metrics.OUTPUTS.labels(self._name).inc(sum(len(outs) for _, outs in results))
        metrics.BATCH_SIZE.labels(self._name).observe(len(envelopes))
        metrics.BATCH_SECONDS.labels(self._name).observe(time.perf_counter() - started)
        return len(envelopes)

    def _produce_and_commit(
        self,
        envelopes: Sequence[Envelope],
        results: Sequence[tuple[Envelope, list[O]]],
        dead: Sequence[DeadLetter],
    ) -> None:
        """Steps 4-6. RecordRefused when Kafka refused any record, with what to write instead
        remembered for when the batch is read again."""
        self.commit.begin()
        attempt = _Attempt(self.producer, self.policy.flush_timeout_s, self._suspects)
        for env, outs in results:
            for out in outs:
                attempt.send(env, self.route.output_topic, self.route.output_codec.encode(out), out.key)
        for letter in dead:
            key, value, headers = letter.record(self._name)
            attempt.send(letter, self.route.dlq_topic, value, key, headers)
        if not attempt.refused:
            attempt.flush()
        if attempt.refused:
            for refusal in attempt.guilty:
                self._dead_letter_instead(attempt.sent[refusal.index], refusal)
            for refusal in attempt.suspects:
                self._suspects.add(_position(attempt.sent[refusal.index]))
            raise RecordRefused(attempt.guilty + attempt.suspects)
        offsets = next_offsets(envelopes)
        for tp, position in self._positions().items():
            if tp in offsets:  # past markers the consumer skipped after the batch
                offsets[tp] = max(offsets[tp], position)
        self.commit.commit(offsets)
        self._committed.update(offsets)
        for env in envelopes:
            self._refused.pop((env.topic, env.partition, env.offset), None)
            self._suspects.discard((env.topic, env.partition, env.offset))
        for letter in dead:  # counted once they are surely in the dead-letter topic
            env = letter.env
            metrics.DLQ.labels(self._name, letter.error.reason).inc()
            self._log.warning(
                "%s: %s/%d@%d to %s (payload %s): %s",
                self._name,
                env.topic,
                env.partition,
                env.offset,
                self.route.dlq_topic,
                letter.payload,
                letter.error,
                extra={"topic": env.topic, "partition": env.partition, "offset": env.offset},
            )

    def _dead_letter_instead(self, what: Envelope | DeadLetter, refusal: Refusal) -> None:
        """Remember what to write when the batch is read again: for a refused output, a dead letter
        of its input; for a refused dead letter, the same with less of the payload."""
        at = _position(what)
        if isinstance(what, Envelope):
            reason = OUTPUT_TOO_LARGE if refusal.too_large else OUTPUT_REFUSED
            if at not in self._refused:  # another output of the same input may have been refused too
                error = InvalidMessage(reason, f"{refusal.topic}: {refusal.reason}")
                self._refused[at] = DeadLetter(what, error)
            return
        smaller = _SMALLER.get(what.payload)
        if smaller is None:
            raise DeadLetterRefused(
                f"{refusal.topic} refuses a dead letter without payload ({refusal.reason}): check its "
                f"configuration; the input is {at[0]}/{at[1]}@{at[2]}"
            )
        self._refused[at] = replace(what, payload=smaller)

    def _positions(self) -> dict[TopicPartition, int]:
        return dict(self._positioned.positions()) if self._positioned is not None else {}

    def _catch_up(self) -> None:
        """Idle, with the consumer past what was committed (only transaction markers or aborted
        records lie between): commit that, so an input at rest shows no lag."""
        ahead = {
            tp: position
            for tp, position in self._positions().items()
            if tp in self._committed and position > self._committed[tp]
        }
        if not ahead:
            return
        try:
            self.commit.begin()
            self.commit.commit(ahead)
            self._committed.update(ahead)
        except DeliveryError as exc:  # nothing is lost: no message lies in between
            self.commit.rollback({})
            self._log.info("%s: catching the committed offsets up failed, later then: %s", self._name, exc)

    def _process(self, items: Sequence[I]) -> list[list[O] | InvalidMessage]:
        """Run the stage; while the gallery is down, pause, wait and retry the same batch."""
        delay = min(0.5, self.policy.retry_max_s)
        paused = False
        try:
            while True:
                try:
                    return self.stage.process(items)
                except GalleryUnavailable as exc:
                    metrics.ERRORS.labels(self._name, "gallery").inc()
                    if not self.policy.wait_for_gallery:
                        raise
                    self._log.warning(
                        "%s: gallery unavailable, consuming paused, retry in %.1fs: %s",
                        self._name,
                        delay,
                        exc,
                    )
                    if not paused:
                        self.consumer.pause_all()
                        paused = True
                    if self.stop.wait(delay):
                        raise Interrupted("stopped while the gallery was unavailable") from exc
                    # A paused consumer returns nothing but keeps its group membership alive.
                    self.consumer.consume(1, 0)
                    self._polled()
                    if self._revoked_in_hand:
                        raise Revoked("partitions of the batch in hand were revoked while it waited") from exc
                    delay = min(delay * 2, self.policy.retry_max_s)
        finally:
            if paused:
                self.consumer.resume_all()
                self._stall_watch.reset()  # standing still was on purpose
                self._log.info("%s: gallery back, consuming resumed", self._name)

    def _guard_invalid_ratio(self, total: int, invalid: int) -> None:
        self._recent_invalid.extend([True] * invalid + [False] * (total - invalid))
        sample = len(self._recent_invalid)
        if sample < self.policy.invalid_min_sample:
            return
        ratio = sum(self._recent_invalid) / sample
        if ratio > self.policy.max_invalid_ratio:
            raise TooManyInvalid(
                f"{self._name}: {ratio:.0%} of the last {sample} messages are invalid "
                f"(limit {self.policy.max_invalid_ratio:.0%}); stopping without committing"
            )

    def _watch_input(self) -> None:
        """Eight times per `stall_s`, between batches: a consumer that stopped delivering although its
        input has messages (or cannot reach Kafka at all) for `stall_s` is replaced."""
        consumer = self._rejoining
        now = time.monotonic()
        if consumer is None or self.policy.stall_s <= 0 or now - self._last_watch < self.policy.stall_s / 8:
            return
        self._last_watch = now
        stalled = self._stall_watch.observe(consumer.progress())
        if stalled is None:
            return
        metrics.INPUT_REJOINS.labels(self._name).inc()
        self._log.error(
            "%s: input stalled (%s): rejoining the group with a new Kafka client", self._name, stalled
        )
        consumer.rejoin()
        self._stall_watch.reset()

    def _polled(self) -> None:
        self.health.polled()
        consumer = self._rejoining
        if consumer is not None and consumer.fatal_rejoins > self._fatal_rejoins:  # a dead client replaced
            metrics.INPUT_REJOINS.labels(self._name).inc(consumer.fatal_rejoins - self._fatal_rejoins)
            self._fatal_rejoins = consumer.fatal_rejoins
            self._stall_watch.reset()
        now = time.time()
        metrics.LAST_POLL.labels(self._name).set(now)
        if self._lag is not None and now - self._last_lag >= self.policy.lag_interval_s:
            self._last_lag = now
            for (topic, partition), value in self._lag.lag().items():
                metrics.CONSUMER_LAG.labels(self._name, topic, str(partition)).set(value)
