"""When a frame's results become visible downstream: the latency a consumer of the pipeline sees.

A read_committed consumer (as every facestream consumer, and any consumer of `hits` or `matches`
should be) sees a stage's output only once its batch's transaction has committed; so the time
from a frame's capture to its hit being readable is what this measures, not the time a stage
produced it. Capture and visibility times are both this machine's wall clock (time.time()).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from facestream.codec import Codec
from facestream.errors import InvalidMessage
from facestream.settings import KafkaSettings
from facestream.transport.kafka import client_config


@dataclass(frozen=True, slots=True)
class Seen:
    topic: str
    """The topic's name without the prefix."""
    frame_id: str
    captured_at_ms: int
    seen_at_ms: float
    """Wall clock (epoch ms) when this consumer received the record."""

    @property
    def latency_ms(self) -> float:
        return self.seen_at_ms - self.captured_at_ms


class Visibility:
    """Reads the given topics from their ends as they stand at `start()`, outside any group,
    and records when each record arrived."""

    def __init__(self, kafka: KafkaSettings, codecs: dict[str, Codec[Any]]) -> None:
        self._kafka = kafka
        self._codecs = codecs
        self._consumer = Consumer(
            {
                **client_config(kafka),
                "group.id": f"{kafka.client_id}-visibility",  # required; never joined nor committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                # a fetch waiting for data returns as soon as a transaction's marker makes it
                # readable (measured: 27 ms after commit_transaction returned, with 500 or with 20
                # ms here), so the default long poll costs no accuracy and the broker little CPU
                "fetch.wait.max.ms": 500,
            }
        )
        self.seen: list[Seen] = []
        self.undecodable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="visibility", daemon=True)

    def start(self) -> None:
        prefix = self._kafka.topic_prefix
        assignment = []
        for topic in self._codecs:
            metadata = self._consumer.list_topics(prefix + topic, timeout=15).topics[prefix + topic]
            assignment += [TopicPartition(prefix + topic, p, OFFSET_END) for p in metadata.partitions]
        self._consumer.assign(assignment)
        # the first poll resolves OFFSET_END; records written before it are not ours
        self._consumer.consume(num_messages=1, timeout=0.5)
        self._thread.start()

    def _loop(self) -> None:
        prefix = len(self._kafka.topic_prefix)
        while not self._stop.is_set():
            for message in self._consumer.consume(num_messages=500, timeout=0.05):
                now_ms = time.time() * 1000
                if message.error() is not None:
                    continue
                topic = (message.topic() or "")[prefix:]
                try:
                    decoded = self._codecs[topic].decode(message.value() or b"")
                except InvalidMessage:
                    self.undecodable += 1
                    continue
                ref = decoded.ref
                self.seen.append(Seen(topic, ref.frame_id, ref.captured_at_ms, now_ms))

    def stop(self) -> list[Seen]:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        return self.seen
