"""The episode step's group keeps up with `hits` while hits keep coming.

`hits` is written in Kafka transactions, so each transaction leaves one offset (its commit
marker) that no consumer is given. faust-streaming 0.15.3 records the gap before a delivered message
including the message's own offset, which it also acks; the repeated offset ends faust's run of
consecutive acked offsets, so each commit moved past one transaction only and the group's lag
grew for as long as hits arrived (the scale report of 2026-12-06: 1,512 behind after 3 minutes,
while the candidates themselves came out within a second). The next restart would read all of it
again. This test writes one hit per transaction, without pause, and waits for the group to
commit past most of them before the writing stops (at rest a separate path commits past the
last markers: it must not be what makes this pass).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from facestream import codec
from facestream.runtime.episodes_app import EpisodesApp, EpisodesConfig
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config
from tests.fixtures.hits import make_hit

pytestmark = pytest.mark.kafka


class Writer(threading.Thread):
    """One hit per transaction into partition 0 of `hits`, until stopped."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        super().__init__(name="hits-writer", daemon=True)
        self.topic = topic
        self.transactions = 0
        self.stop = threading.Event()
        transactional_id = f"hits-{uuid.uuid4().hex[:8]}"
        self._producer = Producer({**client_config(kafka), "transactional.id": transactional_id})

    def run(self) -> None:
        self._producer.init_transactions(30)
        start_ms = int(time.time() * 1000)
        while not self.stop.is_set():
            hit = make_hit("gate", start_ms + 200 * self.transactions)  # one episode: one candidate
            self._producer.begin_transaction()
            self._producer.produce(self.topic, codec.HITS.encode(hit), hit.key, partition=0)
            self._producer.commit_transaction(30)
            self.transactions += 1
            time.sleep(0.05)
        self._producer.flush(10)


def committed(kafka: KafkaSettings, group: str, topic: str) -> int:
    reader = Consumer({**client_config(kafka), "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = reader.committed([TopicPartition(topic, 0)], timeout=10)
        return max(0, tp.offset)
    finally:
        reader.close()


def test_the_episode_steps_group_commits_while_transactional_hits_keep_coming(
    kafka_topics: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_topics
    hits = kafka.topic_prefix + topics.HITS
    config = EpisodesConfig(
        kafka=kafka, app_id=kafka.topic_prefix + "facestream-episodes", data_dir=tmp_path / "episodes",
        gap_ms=30_000, partitions=2, replication=1,
    )  # fmt: skip
    started, failure = threading.Event(), []
    stop_holder: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}

    async def serve() -> None:
        stop_holder["stop"] = (asyncio.get_running_loop(), asyncio.Event())
        started.set()
        await EpisodesApp(config).run(stop_holder["stop"][1])

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)

    app_thread = threading.Thread(target=run, name="episodes", daemon=True)
    app_thread.start()
    assert started.wait(30)
    writer = Writer(kafka, hits)
    writer.start()
    try:
        # 80 transactions are 160 offsets; faust commits every 2.8 s. Going one transaction per
        # commit, the group would need 3.7 minutes to pass offset 120; the deadline is 60 s.
        deadline = time.monotonic() + 60
        while (done := committed(kafka, config.app_id, hits)) < 120:
            assert not failure, failure
            assert writer.is_alive(), "the writer stopped"
            assert time.monotonic() < deadline, (
                f"the group committed {done} of {2 * writer.transactions} offsets while hits kept coming"
            )
            time.sleep(0.5)
        assert writer.is_alive(), "the writer stopped first: the at-rest path may have committed"
    finally:
        writer.stop.set()
        writer.join(30)
        loop, stop = stop_holder["stop"]
        loop.call_soon_threadsafe(stop.set)
        app_thread.join(60)
    assert not failure, failure
