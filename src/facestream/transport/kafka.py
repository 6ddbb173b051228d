"""Apache Kafka transport over confluent-kafka (librdkafka).

confluent-kafka is on the frame path because it moves thousands of large messages a
second from C; faust (aiokafka) is kept for the low-rate stateful layer.

Delivery rules: producers are idempotent with acks=all; consumers never auto-commit and
never auto-store offsets, so an offset is committed only by the runner, after the
producer has confirmed every output of the batch. The read-process-write stages go one
step further with `TransactionalProducer`: a batch's outputs and its input offsets are
committed in one Kafka transaction, and consumers read `read_committed`, so a crash
anywhere leaves either all of a batch downstream or none of it (docs/delivery.md).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from facestream.errors import ConfigError, DeliveryError, FacestreamError
from facestream.settings import KafkaSettings
from facestream.transport.base import (
    AssignmentCallback,
    Envelope,
    Headers,
    Offsets,
    PartitionProgress,
    Refusal,
)
from facestream.transport.base import RecordRefused as RecordRefused  # re-exported: the sampler's import
from facestream.transport.topics import FETCH_MAX_BYTES, MAX_RECORD_BYTES, PRODUCER_BATCH_BYTES, TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

REBALANCE_ERRORS = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._STATE,
    }
)
"""A commit refused because the group moved on: the partitions belong to someone else now."""


RECORD_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,  # over message.max.bytes (producer) or max.message.bytes (topic)
        KafkaError.RECORD_LIST_TOO_LARGE,  # a batch larger than the topic's segment.bytes
        KafkaError.INVALID_RECORD,  # the broker's checks of the record (e.g. no key on a compacted topic)
    }
)
"""Refusals for what a record is: sent again, it is refused again, so no retry can help and the
record must go elsewhere (the runner dead-letters its input). Every other produce error (a broker
away, a timeout, records purged by an abort) is retried as before. The broker refuses a whole
batch, so every record that shared a batch with the culprit is reported with the same error:
only a refusal of a record sent alone names it for sure (the runner isolates suspects)."""

TOO_LARGE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


def _refusal(index: int, topic: str, error: KafkaError) -> Refusal:
    return Refusal(index, topic, error.code(), error.str(), too_large=error.code() in TOO_LARGE_ERRORS)


class TransactionAborted(DeliveryError):
    """The batch's transaction could not commit and was aborted: nothing of it is visible
    downstream, and the batch must be processed again."""


class ProducerFenced(FacestreamError):
    """A newer instance with the same transactional id took over, or the producer hit a fatal
    error: this process must stop (its replacement already redoes the uncommitted batch)."""


OPERATOR_ERRORS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._SSL,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)
"""Client errors only an operator can fix (credentials, certificates, ACLs): logged as errors."""


def report_client_error(error: KafkaError) -> None:
    """librdkafka's error callback. A refused login or a missing right would otherwise show only
    as timeouts further up, so it is logged as an error, saying what the broker said; connection
    errors while a broker restarts are expected, and reported by the runner's own retries."""
    if error.code() in OPERATOR_ERRORS or error.fatal():
        log.error("kafka refused this client: %s", error.str())
    else:
        log.debug("kafka client: %s", error.str())


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings shared by producers, consumers and the admin client."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        # librdkafka logs connection failures itself at level 3; the runner reports them
        # through metrics and its own log lines instead. Errors come through `error_cb`.
        "log_level": 2,
        "error_cb": report_client_error,
        # After a broker restart, librdkafka 2.16's default (rebootstrap) decommissions the brokers
        # it had learned, and a transactional producer then waits on the dead handle of its group
        # coordinator: every first send_offsets_to_transaction blocked until replaced (20 s a stage).
        "metadata.recovery.strategy": settings.metadata_recovery_strategy,
    }
    if settings.librdkafka_debug:
        config["debug"] = settings.librdkafka_debug  # raises librdkafka's log level to debug
    if "SASL" in settings.security_protocol:
        if not settings.sasl_username or settings.sasl_password is None:
            raise ConfigError("SASL needs both sasl_username and sasl_password")
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    if "SSL" in settings.security_protocol:
        if settings.ssl_ca_location:
            config["ssl.ca.location"] = str(settings.ssl_ca_location)
        if settings.ssl_certificate_location:
            config["ssl.certificate.location"] = str(settings.ssl_certificate_location)
        if settings.ssl_key_location:
            config["ssl.key.location"] = str(settings.ssl_key_location)
    return config


def _envelope(message: Message) -> Envelope:
    raw_headers: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    headers: Headers = tuple((k, v or b"") for k, v in raw_headers)
    _, timestamp = message.timestamp()
    return Envelope(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value() or b"",
        headers=headers,
        timestamp_ms=timestamp,
    )


Subscription = tuple[list[str], AssignmentCallback | None, AssignmentCallback | None]
"""Topics and callbacks as last given to `subscribe`, for `rejoin` to give again."""


class KafkaConsumer:
    """A group member that commits only when told to.

    `instance_id` makes it a static member (group.instance.id): a replica restarted under the
    same id gets its partitions back at once instead of waiting for its old session to time
    out. Leave it None for replicas without a stable name; a static member that stops is not
    replaced until its session times out.

    A client that hits a fatal error is dead for good: librdkafka says so once, as a `_FATAL`
    consumer error, and from then on delivers nothing. The one fatal consumer error is a static
    member fenced by another join under its instance id, which a broker restart provokes in
    librdkafka 2.16 (its own JoinGroup retried, the first answer arriving after the second).
    So `consume` replaces such a client at once (`rejoin`): the new one takes the instance id
    back, and with it the partitions. Should it be fenced again and again (two replicas started
    with one --replica-id), the replacements slow down (`FATAL_REJOIN_DELAYS_S`) rather than
    fence each other in a loop, and the log says why each time.
    """

    FATAL_REJOIN_DELAYS_S = (0.0, 5.0, 15.0, 60.0, 300.0)
    """Wait before the 1st, 2nd, ... replacement after a fatal error; the count starts over after
    `FATAL_REJOIN_RESET_S` without one."""
    FATAL_REJOIN_RESET_S = 600.0

    def __init__(
        self,
        settings: KafkaSettings,
        group_id: str,
        *,
        instance_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        config = {
            **client_config(settings),
            "group.id": group_id,
            **({"group.instance.id": instance_id} if instance_id else {}),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Only committed outputs of transactional producers are read downstream.
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            # The broker answers a connection's requests in order, so an idle fetch's long poll
            # (500 ms by default) holds up every lag and progress query behind it.
            "fetch.wait.max.ms": 100,
            "fetch.max.bytes": FETCH_MAX_BYTES,  # transport/topics.py: the size limits
            **(extra or {}),
        }
        self._config = config
        self._fatal: KafkaError | None = None
        """The current client's fatal error: it delivers nothing more and must be replaced."""
        self._consumer = self._client()
        self._assigned: list[TopicPartition] = []
        self._paused = False
        self._subscription: Subscription | None = None
        self.group_id = group_id
        self.instance_id = instance_id
        self.fatal_rejoins = 0
        """Clients replaced after a fatal error (the runner counts them as rejoins)."""
        self._recent_fatal_rejoins = 0
        self._last_fatal_rejoin = -self.FATAL_REJOIN_RESET_S

    def _client(self) -> CKConsumer:
        """A new librdkafka consumer whose fatal errors, reported to `error_cb`, mark it for replacing."""
        client: list[CKConsumer] = []

        def on_error(error: KafkaError) -> None:
            report_client_error(error)
            if error.fatal() and client and client[0] is self._consumer:
                self._fatal = error

        client.append(CKConsumer({**self._config, "error_cb": on_error}))
        return client[0]

    @property
    def raw(self) -> CKConsumer:
        return self._consumer

    def group_metadata(self) -> object:
        """What a transaction's offset commit is checked against (KIP-447 fencing)."""
        return self._consumer.consumer_group_metadata()

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignmentCallback | None = None,
        on_revoke: AssignmentCallback | None = None,
    ) -> None:
        self._subscription = (list(topics), on_assign, on_revoke)
        client = self._consumer

        def assigned(_: CKConsumer, partitions: list[TopicPartition]) -> None:
            self._assigned.extend(partitions)
            if self._paused and partitions:
                # Paused means paused: a partition gained meanwhile must not deliver either.
                client.pause(partitions)
            if on_assign is not None:
                on_assign([(p.topic, p.partition) for p in partitions])

        def revoked(_: CKConsumer, partitions: list[TopicPartition]) -> None:
            if client is not self._consumer:
                return  # a client replaced by `rejoin`, closing: its partitions were revoked then
            gone = {(p.topic, p.partition) for p in partitions}
            self._assigned = [p for p in self._assigned if (p.topic, p.partition) not in gone]
            if on_revoke is not None:
                on_revoke(sorted(gone))

        client.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def rejoin(self) -> None:
        """Leave the group and join it again with a new client (see runtime/stall.py for why).

        Called between batches. The partitions this member held are revoked first (the runner
        forgets their lag series); the new client gets its assignment as any member does, at
        once for a static member (its instance id fences the old client). The old client is
        closed on a thread of its own: closing a wedged client can block.
        """
        if self._subscription is None:
            raise RuntimeError("rejoin before subscribe")
        topics, on_assign, on_revoke = self._subscription
        old, held = self._consumer, sorted((p.topic, p.partition) for p in self._assigned)
        self._assigned = []
        if held and on_revoke is not None:
            on_revoke(held)
        self._fatal = None
        self._consumer = self._client()
        threading.Thread(target=old.close, name="close-replaced-consumer", daemon=True).start()
        self.subscribe(topics, on_assign, on_revoke)

    def consume(self, max_messages: int, timeout_s: float) -> list[Envelope]:
        """Up to `max_messages` messages, waiting at most `timeout_s`. A client found dead (a fatal
        error) is replaced instead, and nothing is returned: what it delivered in the same call
        belongs to partitions it had already lost, and the new client reads them again."""
        if self._fatal is None:
            messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
            out = []
            for message in messages:
                error = message.error()
                if error is None:
                    out.append(_envelope(message))
                elif error.code() == KafkaError._PARTITION_EOF:
                    continue
                elif error.fatal() or error.code() == KafkaError._FATAL:
                    self._fatal = error
                else:
                    log.warning("consumer: %s", error.str())
            if self._fatal is None:
                return out
        self._replace_dead_client(timeout_s)
        return []

    def _replace_dead_client(self, timeout_s: float) -> None:
        """Rejoin with a new client, at once the first time; repeated fatal errors wait longer each
        time (up to `timeout_s` per call, so the caller's loop keeps its pace)."""
        now = time.monotonic()
        if now - self._last_fatal_rejoin > self.FATAL_REJOIN_RESET_S:
            self._recent_fatal_rejoins = 0
        delays = self.FATAL_REJOIN_DELAYS_S
        due = self._last_fatal_rejoin + delays[min(self._recent_fatal_rejoins, len(delays) - 1)]
        if now < due:
            time.sleep(min(timeout_s, due - now))
            return
        error = self._fatal
        why = error.str() if error is not None else "fatal error"
        if self.instance_id and error is not None and "fenced" in why.lower():
            why += (
                f" (another join used group.instance.id {self.instance_id!r}: after a broker restart "
                "this replica's own, retried; if it keeps happening, two replicas share one --replica-id)"
            )
        log.error(
            "consumer of group %s is dead: %s; joining the group again with a new client", self.group_id, why
        )
        self._last_fatal_rejoin = now
        self._recent_fatal_rejoins += 1
        self.fatal_rejoins += 1
        if self._subscription is not None:
            self.rejoin()
        else:  # never subscribed: nothing to join, only the client to renew
            old, self._consumer, self._fatal = self._consumer, self._client(), None
            threading.Thread(target=old.close, name="close-replaced-consumer", daemon=True).start()

    def commit(self, offsets: Offsets, *, timeout_s: float = 60.0) -> None:
        """Store the offsets; dropped (and logged) when a rebalance took the partitions meanwhile.

        Refused during a rebalance, the commit is dropped, not retried: the partitions'
        new owner reads the batch again from the last committed offset (at-least-once),
        and the service keeps running. A broker that does not answer is asked again until
        `timeout_s`; then the error is raised.
        """
        if not offsets:
            return
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        while True:
            try:
                self._consumer.commit(offsets=partitions, asynchronous=False)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() in REBALANCE_ERRORS:
                    log.warning(
                        "commit refused (%s): the partitions moved in a rebalance; their new owner "
                        "reads the batch again",
                        error.str(),
                    )
                    return
                if not error.retriable() or time.monotonic() + delay > deadline:
                    raise
                log.warning("commit failed (%s); retrying in %.1fs", error.str(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset this consumer will deliver, per assigned partition (where known).

        Past the last message delivered, and past any transaction markers or aborted records
        after it that the consumer has already skipped: committing this rather than
        last-offset + 1 leaves a transactional input with no phantom lag of one per commit.
        """
        if not self._assigned:
            return {}
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.position(list(self._assigned))
            if tp.offset >= 0 and tp.error is None
        }

    def rewind(self, offsets: Offsets) -> None:
        """Seek the partitions this member still owns back to `offsets` (an aborted batch's
        first offsets), so the next poll delivers the batch again."""
        owned = {(p.topic, p.partition) for p in self._assigned}
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in owned:
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def lag(self, timeout_s: float = 5.0) -> dict[tuple[str, int], int]:
        """Per assigned partition: messages between the group's committed offset and the end.

        With no committed offset yet, everything retained counts (auto.offset.reset is
        earliest). It asks the broker, so the runner calls it every few seconds, not per
        poll; a broker that does not answer gives no numbers rather than stopping the loop.
        """
        if not self._assigned:
            return {}
        try:
            committed = self._consumer.committed(list(self._assigned), timeout=timeout_s)
            bounds = self._bounds(committed, timeout_s)
        except KafkaException as exc:
            log.warning("consumer lag unavailable: %s", exc)
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in committed:
            start, end = bounds[(tp.topic, tp.partition)]
            out[(tp.topic, tp.partition)] = max(0, end - (tp.offset if tp.offset >= 0 else start))
        return out

    def progress(self, timeout_s: float = 5.0) -> dict[tuple[str, int], PartitionProgress] | None:
        """Where the group stands on every partition of the subscribed topics (not only this
        member's): this client's position where it owns the partition, else the group's committed
        offset, else the partition's start; and the partition's end. None when Kafka does not answer."""
        if self._subscription is None:
            return None
        try:
            wanted = [
                TopicPartition(topic, partition)
                for topic in self._subscription[0]
                for partition in self._consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            ]
            if not wanted:
                return {}  # the topic is not there (yet): nothing to wait for
            committed = self._consumer.committed(wanted, timeout=timeout_s)
            bounds = self._bounds(committed, timeout_s)
        except KafkaException as exc:
            log.warning("where the input stands is unknown: %s", exc)
            return None
        positions = self.positions()
        out = {}
        for tp in committed:
            key = (tp.topic, tp.partition)
            start, end = bounds[key]
            done = positions.get(key, tp.offset if tp.offset >= 0 else start)
            out[key] = PartitionProgress(done=done, end=end)
        return out

    def _bounds(
        self, partitions: list[TopicPartition], timeout_s: float
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """Each partition's start and end, in two requests whatever their number (ListOffsets
        for the earliest and the latest; read_committed, the end is the last stable offset)."""
        starts, ends = (
            self._consumer.offsets_for_times(
                [TopicPartition(p.topic, p.partition, which) for p in partitions], timeout=timeout_s
            )
            for which in (-2, -1)  # OFFSET_BEGINNING, OFFSET_END
        )
        out = {}
        for start, end in zip(starts, ends, strict=True):
            if start.error is not None or end.error is not None:
                raise KafkaException(start.error or end.error)
            out[(start.topic, start.partition)] = (start.offset, end.offset)
        return out

    def pause_all(self) -> None:
        self._paused = True
        if self._assigned:
            self._consumer.pause(self._assigned)

    def resume_all(self) -> None:
        self._paused = False
        if self._assigned:
            self._consumer.resume(self._assigned)

    def close(self) -> None:
        self._consumer.close()


class RangeReader:
    """Reads exact offset ranges of partitions, outside any group, committing nothing; one
    consumer kept for many reads (calls are serialised).

    Offsets of a topic written in transactions are not contiguous: every commit or abort
    leaves a control record, and an aborted transaction's messages are skipped (the reader is
    read_committed). A range may therefore hold fewer messages than offsets, or none; the
    read ends at the range's end or at the partition's end, whichever comes first.

    Short waits (fetch.wait.max.ms 5, polls of 10 ms): the episode step reads the one-offset gap
    each matcher transaction leaves in `hits` (its commit marker) on its hot path, one after
    another. With 50 ms and 200 ms such a read took 200 ms (wall, median of 50:
    load-tests/gap_read.py), which caps the step at ~5 matcher transactions a second; the scale
    report's latency run had ~5.6, and the step stayed ~42 s behind its input. With these, 11 ms.
    The consumer is assigned only during a read, so the shorter waits cost no polling in between.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._consumer = CKConsumer(
            {
                **client_config(settings),
                "group.id": f"{settings.client_id}-read-range",  # required; never joined nor committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 5,
            }
        )
        self._lock = threading.Lock()

    def read(
        self, topic: str, partition: int, start: int, end: int, timeout_s: float = 15.0
    ) -> list[Envelope]:
        """The messages at offsets [start, end); offsets that no longer exist (retention) or never
        held a message (control records, aborted transactions) are simply absent."""
        if end <= start:
            return []
        with self._lock:
            self._consumer.assign([TopicPartition(topic, partition, start)])
            out: list[Envelope] = []
            deadline = time.monotonic() + timeout_s
            try:
                while time.monotonic() < deadline:
                    done = False
                    for message in self._consumer.consume(num_messages=500, timeout=0.01):
                        error = message.error()
                        offset = message.offset() or 0
                        if message.topic() != topic or message.partition() != partition:
                            continue  # left over from an earlier read
                        if error is None:
                            if start <= offset < end:
                                out.append(_envelope(message))
                            done = done or offset >= end - 1
                        elif error.code() == KafkaError._PARTITION_EOF:
                            done = True  # the partition (its last stable offset) ends before `end`
                    if done:
                        break
                return out
            finally:
                self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()


def read_range(
    settings: KafkaSettings, topic: str, partition: int, start: int, end: int, timeout_s: float = 15.0
) -> list[Envelope]:
    """The messages at offsets [start, end) of one partition, read directly (no group, no
    commit): `RangeReader.read` with a reader made for the one call."""
    if end <= start:
        return []
    reader = RangeReader(settings)
    try:
        return reader.read(topic, partition, start, end, timeout_s)
    finally:
        reader.close()


class KafkaProducer:
    def __init__(self, settings: KafkaSettings, *, extra: dict[str, Any] | None = None) -> None:
        config = {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",  # JPEG and float vectors do not compress
            # transport/topics.py: the size limits
            "message.max.bytes": MAX_RECORD_BYTES,
            "batch.size": PRODUCER_BATCH_BYTES,
            # librdkafka's default, named: a keyed record goes to `partition_of_key`, where readers look.
            "partitioner": "consistent_random",
            **(extra or {}),
        }
        self._config = config
        self._producer = CKProducer(config)
        self._failures: list[str] = []
        self._refusals: list[Refusal] = []
        self._window = 0
        self._sent = 0

    @property
    def raw(self) -> CKProducer:
        return self._producer

    def _new_window(self) -> None:
        """Start counting `produce` calls from 0 again; reports of earlier calls are ignored (their
        flush already failed, or their transaction was aborted)."""
        self._window += 1
        self._sent = 0
        self._failures = []
        self._refusals = []

    def _on_delivery(self, window: int, index: int, error: KafkaError | None, message: Message) -> None:
        if error is None or window != self._window:
            return
        if error.code() in RECORD_ERRORS:
            self._refusals.append(_refusal(index, message.topic() or "", error))
        elif len(self._failures) < 1000:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> None:
        """Queue one record; RecordRefused if librdkafka refuses it outright (over `MAX_RECORD_BYTES`)."""
        index = self._sent
        self._sent += 1
        report = functools.partial(self._on_delivery, self._window, index)
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room (backpressure).
                self._producer.poll(0.1)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() in RECORD_ERRORS:
                    raise RecordRefused([_refusal(index, topic, error)]) from None
                raise
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        """Wait for every record's acknowledgement: RecordRefused if Kafka refused any for what it
        is, DeliveryError if any other failed or is unacknowledged."""
        remaining = self._producer.flush(timeout_s)
        failures, refusals = self._failures, self._refusals
        self._failures, self._refusals = [], []
        self._flushed()
        if refusals:
            raise RecordRefused(sorted(refusals, key=lambda r: r.index))
        if remaining or failures:
            detail = "; ".join(failures[:3]) or f"{remaining} message(s) not acknowledged"
            raise DeliveryError(f"delivery failed: {detail}")

    def _flushed(self) -> None:
        """After a flush: count `produce` calls from 0 again."""
        self._new_window()

    def close(self) -> None:
        self._producer.flush(5)


class TransactionalProducer(KafkaProducer):
    """A producer whose outputs become visible only together with the input offsets they
    came from: one Kafka transaction per batch (exactly-once read-process-write).

    `transactional_id` must be stable per replica (group id + replica name): a restarted
    replica with the same id fences its predecessor and aborts whatever transaction it left
    open, instead of read_committed consumers waiting for that transaction to time out.

    librdkafka 2.16 can block in a transaction call well past the call's own timeout when the
    group coordinator went away, as in a broker restart (confluentinc/librdkafka#5456, #5511:
    `send_offsets_to_transaction` hangs for good). So every call is waited for at most
    `timeout_s` + `STUCK_MARGIN_S`; a call still blocked then is abandoned with its client, and a
    new client under the same transactional id takes over (fencing the stuck one, aborting its
    transaction), so the batch is simply processed again.
    """

    STUCK_MARGIN_S = 10.0

    def __init__(
        self,
        settings: KafkaSettings,
        transactional_id: str,
        *,
        timeout_s: float = 30.0,
        wait_for_kafka: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, extra={"transactional.id": transactional_id, **(extra or {})})
        self.transactional_id = transactional_id
        self._timeout_s = timeout_s
        self._open = False
        # A broker that is still starting is waited for, a while; one that never answers is an error,
        # unless the caller (a service, not ready meanwhile) waits for as long as it takes.
        patience_s = None if wait_for_kafka else 4 * timeout_s
        self._call("init", lambda: self._producer.init_transactions(timeout_s), patience_s=patience_s)

    def begin(self) -> None:
        if not self._open:
            self._call("begin", self._producer.begin_transaction)
            self._open = True
            self._new_window()

    def _flushed(self) -> None:
        """A transaction may be flushed more than once (to send a record alone): its `produce`
        calls are counted from `begin`."""
        if not self._open:
            self._new_window()

    def commit(self, offsets: Offsets, group_metadata: object) -> None:
        """Add the input offsets to the open transaction and commit it; TransactionAborted when it
        had to be aborted instead (the caller then processes the batch again)."""
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if partitions:
                self._call(
                    "send offsets",
                    lambda: self._producer.send_offsets_to_transaction(
                        partitions, group_metadata, self._timeout_s
                    ),
                )
            self._call("commit", lambda: self._producer.commit_transaction(self._timeout_s))
        except TransactionAborted:
            self.abort()
            raise
        self._open = False

    def abort(self) -> None:
        """Abort the open transaction, if any: its messages are never read downstream.

        A client that cannot abort within twice its timeout is replaced: after a broker restart
        librdkafka 2.16 can keep partition leaders it never looks up again, and then every abort
        "times out, retry to resume" for good. The new client's init fences the old one, and the
        broker aborts its transaction.
        """
        if self._open:
            try:
                self._call(
                    "abort",
                    lambda: self._producer.abort_transaction(self._timeout_s),
                    patience_s=2 * self._timeout_s,
                )
            except TransactionAborted:
                pass  # blocked in librdkafka: `_bounded` replaced the client already
            except DeliveryError:
                self._replace_stuck("abort")
            self._open = False
            # The aborted batch's messages come back as purged: not failures of the next batch.
            self._producer.poll(0)
            self._new_window()

    def close(self) -> None:
        try:
            self.abort()
            self._producer.flush(5)
        except (FacestreamError, KafkaException) as exc:  # closing anyway: the broker aborts it in time
            log.warning("transaction %s left open: %s", self.transactional_id, exc)

    def _call(self, what: str, fn: Callable[[], T], *, patience_s: float | None = None) -> T:
        """Run a transaction call, asking again while the error is retriable (a broker restarting:
        for as long as it takes, or `patience_s`); abortable errors become TransactionAborted,
        fatal ones ProducerFenced."""
        delay = 0.5
        deadline = None if patience_s is None else time.monotonic() + patience_s
        while True:
            try:
                return self._bounded(what, fn)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal() or error.code() in (
                    KafkaError._FENCED,
                    KafkaError.PRODUCER_FENCED,
                    KafkaError.INVALID_PRODUCER_EPOCH,
                ):
                    raise ProducerFenced(
                        f"transaction {what} ({self.transactional_id}): {error.str()}"
                    ) from None
                if error.txn_requires_abort():
                    raise TransactionAborted(f"transaction {what} failed: {error.str()}") from None
                if not error.retriable():
                    raise ProducerFenced(
                        f"transaction {what} ({self.transactional_id}): {error.str()}"
                    ) from None
                if deadline is not None and time.monotonic() > deadline:
                    raise DeliveryError(f"transaction {what}: Kafka did not answer: {error.str()}") from None
                self._producer.poll(0)  # serves error_cb: a refused login is logged as such
                log.warning("transaction %s: %s; retrying in %.1fs", what, error.str(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _bounded(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()`, unless it is still blocked after `timeout_s` + `STUCK_MARGIN_S`: then the
        client is replaced and TransactionAborted raised (see the class docstring)."""
        outcome: list[T] = []
        failure: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                outcome.append(fn())
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name=f"transaction-{what}", daemon=True).start()
        if not done.wait(self._timeout_s + self.STUCK_MARGIN_S):
            self._replace_stuck(what)
            raise TransactionAborted(f"transaction {what} blocked in librdkafka; the producer was replaced")
        if failure:
            raise failure[0]
        return outcome[0]

    def _replace_stuck(self, what: str) -> None:
        log.error(
            "transaction %s of %s did not complete in time; replacing the producer (the stuck one is fenced)",
            what,
            self.transactional_id,
        )
        self._producer = CKProducer(self._config)  # the stuck client is left to its thread
        self._new_window()
        self._open = False
        # For as long as it takes, as begin and commit do: the broker may still be on its way back.
        self._call("init", lambda: self._producer.init_transactions(self._timeout_s))


def group_start_offset(
    settings: KafkaSettings, group: str, topic: str, partition: int, timeout_s: float = 15.0
) -> int:
    """Where `group` starts reading a partition: its committed offset, else the log's start
    (auto.offset.reset earliest). Asked without joining the group."""
    consumer = CKConsumer({**client_config(settings), "group.id": group, "enable.auto.commit": False})
    try:
        tp = TopicPartition(topic, partition)
        committed = consumer.committed([tp], timeout=timeout_s)[0].offset
        if committed >= 0:
            return int(committed)
        low, _ = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
        return int(low)
    except KafkaException as exc:
        raise DeliveryError(
            f"cannot read where {group} starts on {topic}/{partition}: {exc.args[0]}"
        ) from None
    finally:
        consumer.close()


def partition_of_key(key: bytes, partitions: int) -> int:
    """The partition a `KafkaProducer` writes a record with this (non-empty) key to: librdkafka's
    consistent_random partitioner, CRC-32 of the key modulo the partition count."""
    return zlib.crc32(key) % partitions


def last_of_key(
    settings: KafkaSettings, topic: str, key: bytes, *, within: int = 5000, timeout_s: float = 15.0
) -> Envelope | None:
    """The newest record with `key` among the last `within` records of the partition the key is
    written to (`partition_of_key`); None if it is not among them.

    Read backwards in windows that double from 64 records, so a key written lately costs a
    few records whatever the partition holds; `within` bounds what a key written long ago (or
    never) costs. DeliveryError when Kafka does not answer.
    """
    consumer = CKConsumer(
        {
            **client_config(settings),
            "group.id": f"{settings.client_id}-last-of-key",  # required; never joined nor committed
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        if not partitions:
            raise DeliveryError(f"{topic} has no partitions (does it exist?)")
        partition = partition_of_key(key, len(partitions))
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
    except KafkaException as exc:
        raise DeliveryError(f"cannot read {topic}'s end: {exc.args[0]}") from None
    finally:
        consumer.close()
    reader = RangeReader(settings)
    try:
        end, window = int(high), 64
        floor = max(int(low), int(high) - within)
        while end > floor:
            start = max(floor, end - window)
            found = [env for env in reader.read(topic, partition, start, end, timeout_s) if env.key == key]
            if found:
                return max(found, key=lambda env: env.offset)
            end, window = start, window * 2
        return None
    finally:
        reader.close()


def find_key(settings: KafkaSettings, topic: str, key: bytes, since_ms: int, timeout_s: float = 30.0) -> bool:
    """Whether a message with `key` was written to `topic` at or after `since_ms` (its timestamp).

    Reads every partition from the offset of that time to its end, outside any group: a
    check made rarely (after a crash), so a full scan of a short tail is acceptable.
    """
    consumer = CKConsumer(
        {
            **client_config(settings),
            "group.id": f"{settings.client_id}-find-key",  # required; never joined nor committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        wanted = [TopicPartition(topic, p, since_ms) for p in metadata.partitions]
        found = consumer.offsets_for_times(wanted, timeout=timeout_s)
        for start in found:
            _, end = consumer.get_watermark_offsets(
                TopicPartition(topic, start.partition), timeout=timeout_s, cached=False
            )
            if start.offset < 0 or start.offset >= end:
                continue  # nothing at or after since_ms in this partition
            envelopes = read_range(settings, topic, start.partition, start.offset, end, timeout_s)
            if any(env.key == key for env in envelopes):
                return True
        return False
    except KafkaException as exc:
        raise DeliveryError(f"cannot read {topic} back: {exc.args[0]}") from None
    finally:
        consumer.close()


def ensure_topics(settings: KafkaSettings, specs: Sequence[TopicSpec], timeout_s: float = 30) -> list[str]:
    """Create missing topics with explicit partitions and configs; returns the ones created."""
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config()) for s in specs
    ]
    return create_missing_topics(settings, wanted, timeout_s)


def create_missing_topics(
    settings: KafkaSettings, wanted: Sequence[NewTopic], timeout_s: float = 30
) -> list[str]:
    """Create those of `wanted` that do not exist; returns the ones created, once Kafka serves
    every one of `wanted` with a leader for each partition.

    CreateTopics answers when the controller has recorded a topic; the broker serves it a
    moment later. A client asking for it in between is told it does not exist, and some
    believe that for minutes (faust's consumer then counts a changelog as 0 partitions).
    """
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in wanted if t.topic not in existing]
    created = []
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    _await_leaders(admin, [t.topic for t in wanted], timeout_s)
    return created


def _await_leaders(admin: AdminClient, names: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        served = admin.list_topics(timeout=timeout_s).topics
        waiting = [
            name
            for name in names
            if (topic := served.get(name)) is None
            or topic.error is not None
            or not topic.partitions
            or any(p.leader < 0 or p.error is not None for p in topic.partitions.values())
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise FacestreamError(f"Kafka does not serve {', '.join(waiting)} after {timeout_s:.0f}s")
        time.sleep(0.1)
