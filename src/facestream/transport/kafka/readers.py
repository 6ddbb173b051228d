"""Reading a topic outside any consumer group, committing nothing: exact offset ranges
(`RangeReader`), where a group would start a partition, the newest record of a key, and whether a
key was written since a time."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping

from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from facestream.errors import DeliveryError, RangeUnread
from facestream.settings import KafkaSettings
from facestream.transport.base import Envelope
from facestream.transport.kafka.client import OPERATOR_ERRORS, client_config, to_envelope

READ_REFUSALS = OPERATOR_ERRORS - {KafkaError.GROUP_AUTHORIZATION_FAILED}
"""Errors that mean a range read cannot happen (credentials, certificates, the topic's ACLs).
Not a refused group: the reader's group.id is a placeholder confluent-kafka requires, never joined
nor committed, yet librdkafka still looks up its coordinator, and where the ACLs do not name that
group the broker answers GROUP_AUTHORIZATION_FAILED, some time into the read or not at all. Taken
for a refusal, it failed reads the ACLs allow (the secured pipeline's frame-sampler, in a CI run)."""


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
        self._readable: set[str] = set()

    def read(
        self, topic: str, partition: int, start: int, end: int, timeout_s: float = 15.0
    ) -> list[Envelope]:
        """The messages at offsets [start, end); offsets that no longer exist (retention) or never
        held a message (control records, aborted transactions) are simply absent. RangeUnread when
        the range could not be read to its end within `timeout_s`: an answer with what came by
        then would read as "nothing more there", and the episode step would commit past hits it
        never applied."""
        return self.read_ranges(topic, {partition: (start, end)}, timeout_s, whole=True)

    def read_ranges(
        self,
        topic: str,
        ranges: Mapping[int, tuple[int, int]],
        timeout_s: float = 15.0,
        *,
        whole: bool = False,
    ) -> list[Envelope]:
        """`read` of several partitions of `topic` at once (partition -> [start, end)), all assigned
        together and fetched in parallel: each partition's messages in offset order, the partitions'
        interleaved. Ends when every range is read, or after `timeout_s`: with what came by then,
        or, `whole`, with RangeUnread."""
        wanted = {partition: (start, end) for partition, (start, end) in ranges.items() if end > start}
        if not wanted:
            return []
        with self._lock:
            self._check_readable(topic, timeout_s)
            self._consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in wanted.items()])
            out: list[Envelope] = []
            pending = set(wanted)
            deadline = time.monotonic() + timeout_s
            try:
                while pending and time.monotonic() < deadline:
                    for message in self._consumer.consume(num_messages=500, timeout=0.01):
                        error = message.error()
                        if error is not None and error.code() in READ_REFUSALS:
                            # no waiting fixes it (a missing ACL); such an error may name no partition
                            raise DeliveryError(f"{topic}: Kafka refused the read: {error.str()}")
                        partition = message.partition()
                        if message.topic() != topic or partition not in wanted:
                            continue  # left over from an earlier read
                        start, end = wanted[partition]
                        if error is None:
                            offset = message.offset() or 0
                            if start <= offset < end:
                                out.append(to_envelope(message))
                            if offset >= end - 1:
                                pending.discard(partition)
                        elif error.code() == KafkaError._PARTITION_EOF:
                            pending.discard(
                                partition
                            )  # the partition (its last stable offset) ends before `end`
                if pending and whole:
                    unread = ", ".join(f"{p} [{wanted[p][0]}, {wanted[p][1]})" for p in sorted(pending))
                    raise RangeUnread(
                        f"{topic}: partition {unread} not read to its end in {timeout_s:g}s "
                        f"({len(out)} message(s) by then)"
                    )
                return out
            finally:
                self._consumer.unassign()

    def _check_readable(self, topic: str, timeout_s: float) -> None:
        """DeliveryError when the ACLs refuse `topic` to this principal. Asked of the metadata, once
        per topic that answers: an assigned partition of a refused topic only fetches nothing (no
        error comes through consume), which would read as a range not read in time. Metadata
        that does not come (a broker away) is left to the read, which says how far it got."""
        if topic in self._readable:
            return
        try:
            metadata = self._consumer.list_topics(topic, timeout=min(timeout_s, 5.0)).topics.get(topic)
        except KafkaException:
            return
        error = metadata.error if metadata is not None else None
        if error is not None and error.code() in READ_REFUSALS:
            raise DeliveryError(f"{topic}: Kafka refused the read: {error.str()}")
        if error is None:
            self._readable.add(topic)

    def ranges_since(self, topic: str, since_ms: int, timeout_s: float = 15.0) -> dict[int, tuple[int, int]]:
        """Per partition of `topic` with a message at or after `since_ms` (its timestamp): the
        offset of the first such message and the partition's end (high watermark), the range for
        `read_ranges`. KafkaException when Kafka does not answer."""
        with self._lock:
            partitions = self._consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            found = self._consumer.offsets_for_times(
                [TopicPartition(topic, p, since_ms) for p in partitions], timeout=timeout_s
            )
            out = {}
            for start in found:
                if start.offset < 0:
                    continue  # nothing at or after since_ms in this partition
                _, end = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, start.partition), timeout=timeout_s, cached=False
                )
                if start.offset < end:
                    out[start.partition] = (int(start.offset), int(end))
            return out

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

    Reads every partition from the offset of that time to its end, all at once with one reader,
    outside any group: a check made rarely (after a crash), so a full scan of a short tail is
    acceptable. A read still unfinished after `timeout_s` answers from what it got.
    """
    reader = RangeReader(settings)
    try:
        ranges = reader.ranges_since(topic, since_ms, timeout_s)
        return any(env.key == key for env in reader.read_ranges(topic, ranges, timeout_s))
    except KafkaException as exc:
        raise DeliveryError(f"cannot read {topic} back: {exc.args[0]}") from None
    finally:
        reader.close()
