"""What the brokers know about a consumer group: members, their partitions, and lag.

This is the operator's view (`facestream cluster status`), read with the admin API, so it needs
no member's cooperation: a hung replica still shows as a member with its partitions and a lag
that grows. Lag counts the same way the services' own gauge does: from the committed offset,
or from the earliest retained message when the group has committed nothing yet.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from facestream.errors import ConfigError, FacestreamError
from facestream.settings import KafkaSettings
from facestream.transport.kafka import client_config

COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""Transient answers of a group coordinator that is starting or moving: asked again."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    committed: int | None
    earliest: int
    end: int

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None else self.earliest
        return max(0, self.end - start)


@dataclass(frozen=True, slots=True)
class Member:
    client_id: str
    host: str
    partitions: tuple[int, ...]
    """Of the group's topic only."""


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group: str
    topic: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def idle_members(self) -> int:
        """Members beyond the partition count get nothing to do: replicas wasted."""
        return max(0, len(self.members) - len(self.partitions))

    @property
    def unassigned(self) -> tuple[int, ...]:
        owned = {p for m in self.members for p in m.partitions}
        return tuple(p.partition for p in self.partitions if p.partition not in owned)


class GroupReader:
    """Reads group status through one admin client."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 15.0) -> None:
        self._settings = settings
        self._admin = AdminClient(client_config(settings))
        self._timeout_s = timeout_s

    def partition_count(self, topic: str) -> int:
        try:
            metadata = self._admin.list_topics(topic=topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise FacestreamError(f"Kafka at {self._settings.bootstrap_servers}: {exc.args[0]}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ConfigError(f"topic {topic} does not exist (create it: facestream topics create)")
        return len(found.partitions)

    def status(self, group: str, topic: str) -> GroupStatus:
        count = self.partition_count(topic)
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer = inspector(self._settings, group=group)
        try:
            committed = self._committed(consumer, tps)
            marks = self._watermarks(consumer, tps)
        finally:
            consumer.close()
        description = self._ask(
            lambda: self._admin.describe_consumer_groups([group], request_timeout=self._timeout_s)[
                group
            ].result(timeout=self._timeout_s)
        )
        members = tuple(
            Member(
                client_id=m.client_id,
                host=m.host,
                partitions=tuple(
                    sorted(tp.partition for tp in (m.assignment.topic_partitions or []) if tp.topic == topic)
                ),
            )
            for m in description.members
        )
        lags = tuple(PartitionLag(p, committed.get(p), *marks[p]) for p in range(count))
        return GroupStatus(group, topic, str(description.state.name), members, lags)

    def _committed(self, consumer: Consumer, tps: Sequence[TopicPartition]) -> dict[int, int]:
        """partition -> the group's committed offset (partitions never committed are left out).

        Read first, by a consumer with the group's id (it never joins the group), because a
        consumer looks for the group's coordinator again until one answers, and librdkafka's
        admin requests do not: a FindCoordinator answered COORDINATOR_NOT_AVAILABLE three times
        in a row (a broker still creating __consumer_offsets answers so for a second or two)
        leaves describe_consumer_groups waiting out its whole timeout, and the admin client then
        hangs in destroy once the broker is gone (librdkafka 2.16; seen in CI and reproduced 3
        times in 4 on a fresh broker). Once this has answered, the coordinator is up and the
        admin request finds it at once.
        """
        found = self._ask(lambda: consumer.committed(list(tps), timeout=self._timeout_s))
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def _watermarks(self, consumer: Consumer, tps: Sequence[TopicPartition]) -> dict[int, tuple[int, int]]:
        """(earliest, end) per partition, asked of the partitions' leaders. Just after a topic is
        created (or leadership moves) a broker answers NOT_LEADER for a few seconds, so a failed
        answer is asked again until the timeout."""
        deadline = time.monotonic() + self._timeout_s
        out: dict[int, tuple[int, int]] = {}
        for tp in tps:
            while tp.partition not in out:
                try:
                    low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout_s, cached=False)
                    out[tp.partition] = (int(low), int(high))
                except KafkaException as exc:
                    # librdkafka does not flag NOT_LEADER here as retriable: retry until the deadline.
                    if time.monotonic() > deadline:
                        problem = f"Kafka at {self._settings.bootstrap_servers}: {exc.args[0]}"
                        raise FacestreamError(problem) from None
                    time.sleep(0.25)
        return out

    def _ask(self, request: Callable[[], Any]) -> Any:
        """The answer of `request` (a call that waits for it), asked again while the group's
        coordinator is not ready: the consumer's committed offsets too answered NOT_COORDINATOR
        on a fresh broker under load (4 of 6 runs with 2 cores kept busy).

        A broker that just started (or took over the group) answers COORDINATOR_LOAD_IN_PROGRESS,
        NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE for a few seconds while it loads
        __consumer_offsets; an operator running `cluster status` (or `helm test`) right after a
        broker restart should get the status, not that transient error.
        """
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return request()
            except KafkaException as exc:
                error = exc.args[0]
                retry = isinstance(error, KafkaError) and error.code() in COORDINATOR_NOT_READY
                if retry and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise FacestreamError(f"Kafka at {self._settings.bootstrap_servers}: {error}") from None
            except TimeoutError:
                raise FacestreamError(f"Kafka at {self._settings.bootstrap_servers} did not answer") from None


def inspector(settings: KafkaSettings, group: str | None = None) -> Consumer:
    """A consumer that only reads: it never subscribes, so it never joins `group` (a random one when
    none is given) or moves its members' partitions, and it commits nothing."""
    return Consumer(
        {
            **client_config(settings),
            "group.id": group or f"facestream-inspect-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )


def keys_by_partition(
    settings: KafkaSettings, topic: str, partitions: int, timeout_s: float = 15.0
) -> dict[int, list[str]]:
    """The live keys of a compacted topic, per partition: the last record of each key wins and an
    empty value (a tombstone) removes it. Read by assignment, outside any group, committing nothing."""
    consumer = inspector(settings)
    latest: dict[str, tuple[int, bool]] = {}
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        pending = set(ends)
        while pending:
            message = consumer.poll(timeout_s)
            if message is None:
                raise FacestreamError(f"reading {topic} timed out")
            partition = message.partition() or 0
            if message.error() is None:
                key = (message.key() or b"").decode(errors="replace")
                latest[key] = (partition, bool(message.value()))
                offset = message.offset() or 0
                if offset + 1 >= ends.get(partition, 0):
                    pending.discard(partition)
            else:
                pending.discard(partition)
    except KafkaException as exc:
        raise FacestreamError(f"Kafka at {settings.bootstrap_servers}: {exc.args[0]}") from None
    finally:
        consumer.close()
    out: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for key, (partition, live) in latest.items():
        if live:
            out[partition].append(key)
    return {p: sorted(keys) for p, keys in out.items()}
