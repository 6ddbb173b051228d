"""Writing to Kafka: `KafkaProducer` (idempotent, acks=all) tells a record Kafka refused for what it
is from a delivery that failed; `TransactionalProducer` makes a batch's outputs visible only together
with the input offsets they came from."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as CKProducer

from facestream.errors import DeliveryError, FacestreamError
from facestream.settings import KafkaSettings
from facestream.transport.base import Headers, Offsets, RecordRefused, Refusal
from facestream.transport.kafka.client import client_config, next_retry_delay
from facestream.transport.topics import MAX_RECORD_BYTES, PRODUCER_BATCH_BYTES

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class KafkaProducer:
    """An idempotent producer (acks=all) whose `flush` says what became of every record since the
    last one: all acknowledged, some refused for what they are (`RecordRefused`, by index, so the
    runner can dead-letter their inputs), or some lost otherwise (`DeliveryError`)."""

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
                if error.txn_requires_abort() or error.code() == KafkaError._STATE:
                    # the transaction failed underneath (a refused record's report came first):
                    # the batch is rolled back and tried again, like any failed delivery
                    raise DeliveryError(f"{topic}: {error.str()}") from None
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
                delay = next_retry_delay(delay)

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
