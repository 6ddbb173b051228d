"""The group member the runner reads its input with: `KafkaConsumer`, which commits only when told
to, and replaces its librdkafka client when that client dies."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from facestream.settings import KafkaSettings
from facestream.transport.base import AssignmentCallback, Envelope, Offsets, PartitionProgress
from facestream.transport.kafka.client import (
    client_config,
    next_retry_delay,
    to_envelope,
)
from facestream.transport.topics import FETCH_MAX_BYTES

log = logging.getLogger(__name__)

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
        report = self._config["error_cb"]

        def on_error(error: KafkaError) -> None:
            report(error)
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
                    out.append(to_envelope(message))
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
                delay = next_retry_delay(delay)

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
