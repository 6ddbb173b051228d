"""An in-process broker with Kafka's semantics that matter here: partitions, keys, group offsets.

faust has no in-memory broker, and the embedded mode must run without any server, so this
is the transport of `facestream identify`. It is single-threaded by design: the embedded
runner steps every stage in turn.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from facestream.errors import DeliveryError
from facestream.transport.base import AssignmentCallback, Envelope, Headers, Offsets, TopicPartition


@dataclass
class _Partition:
    log: list[Envelope] = field(default_factory=list)


class MemoryBroker:
    def __init__(self, default_partitions: int = 1, *, auto_create: bool = True) -> None:
        self._topics: dict[str, list[_Partition]] = {}
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._default_partitions = default_partitions
        self.auto_create = auto_create
        """False behaves like a broker with auto.create.topics.enable=false: producing to a
        missing topic fails delivery (the transport contract tests use this)."""

    def has_topic(self, name: str) -> bool:
        return name in self._topics

    def create_topic(self, name: str, partitions: int) -> None:
        self._topics.setdefault(name, [_Partition() for _ in range(partitions)])

    def partitions(self, topic: str) -> list[_Partition]:
        if topic not in self._topics:
            self.create_topic(topic, self._default_partitions)
        return self._topics[topic]

    def append(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> Envelope:
        parts = self.partitions(topic)
        index = zlib.crc32(key) % len(parts) if key is not None else 0
        log = parts[index].log
        env = Envelope(topic, index, len(log), key, value, headers, int(time.time() * 1000))
        log.append(env)
        return env

    def committed(self, group: str, tp: TopicPartition) -> int:
        return self._committed.get((group, tp), 0)

    def commit(self, group: str, offsets: Offsets) -> None:
        for tp, offset in offsets.items():
            self._committed[(group, tp)] = offset

    def lag(self, group: str, topic: str) -> int:
        """Messages not yet committed by `group`: zero means the stage has drained."""
        return sum(
            len(p.log) - self.committed(group, (topic, i)) for i, p in enumerate(self.partitions(topic))
        )

    def consumer(self, group: str) -> MemoryConsumer:
        return MemoryConsumer(self, group)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)


class MemoryConsumer:
    """One consumer per group: it owns every partition of its topics."""

    def __init__(self, broker: MemoryBroker, group: str) -> None:
        self._broker = broker
        self.group = group
        self._topics: list[str] = []
        self._position: dict[TopicPartition, int] = {}
        self._paused = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignmentCallback | None = None,
        on_revoke: AssignmentCallback | None = None,
    ) -> None:
        self._topics = list(topics)
        assigned = [(t, i) for t in self._topics for i in range(len(self._broker.partitions(t)))]
        for tp in assigned:
            self._position[tp] = self._broker.committed(self.group, tp)
        if on_assign is not None:
            on_assign(assigned)

    def consume(self, max_messages: int, timeout_s: float) -> list[Envelope]:
        if self._paused:
            return []
        out: list[Envelope] = []
        for topic in self._topics:
            for index, part in enumerate(self._broker.partitions(topic)):
                tp = (topic, index)
                position = self._position.setdefault(tp, self._broker.committed(self.group, tp))
                take = part.log[position : position + max_messages - len(out)]
                out.extend(take)
                self._position[tp] = position + len(take)
                if len(out) >= max_messages:
                    return out
        return out

    def commit(self, offsets: Offsets) -> None:
        self._broker.commit(self.group, offsets)

    def lag(self) -> dict[TopicPartition, int]:
        """Per partition: messages after the group's committed offset (what the runner exports)."""
        return {
            (topic, i): len(part.log) - self._broker.committed(self.group, (topic, i))
            for topic in self._topics
            for i, part in enumerate(self._broker.partitions(topic))
        }

    def rewind_to_committed(self) -> None:
        """Forget uncommitted reads, as a restarted consumer would."""
        for tp in self._position:
            self._position[tp] = self._broker.committed(self.group, tp)

    def pause_all(self) -> None:
        self._paused = True

    def resume_all(self) -> None:
        self._paused = False

    def close(self) -> None:
        self._topics = []


class MemoryProducer:
    """Appends are acknowledged at once; only a missing topic (auto_create off) fails delivery."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._failures: list[str] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> None:
        if not self._broker.auto_create and not self._broker.has_topic(topic):
            self._failures.append(f"{topic}: unknown topic")
            return
        self._broker.append(topic, value, key, headers)

    def flush(self, timeout_s: float) -> None:
        failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(f"delivery failed: {'; '.join(failures[:3])}")

    def close(self) -> None:
        return None
