"""`facestream cluster status` on a broker that has just started.

A broker creates `__consumer_offsets` on the first group request it gets and answers
COORDINATOR_NOT_AVAILABLE (or, while loading it after a restart, COORDINATOR_LOAD_IN_PROGRESS /
NOT_COORDINATOR) until the group coordinator is up. An operator running `cluster status` (or
`helm test`, which runs it) right after installing or restarting Kafka should get the status,
not that transient error. Under load (2 cores kept busy) a reader that asked the admin API first
failed this 3 times in 3: librdkafka's describe_consumer_groups never asked for the coordinator
again after three COORDINATOR_NOT_AVAILABLE answers (see GroupReader._committed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.groups import GroupReader
from facestream.transport.kafka import ensure_topics
from facestream.transport.topics import catalogue
from tests.fixtures.kafka import TEST_PARTITIONS, running_broker

pytestmark = pytest.mark.kafka


def test_group_status_on_a_fresh_broker_waits_for_the_group_coordinator(tmp_path: Path) -> None:
    with running_broker(tmp_path / "kafka") as bootstrap:
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix="fresh.")
        ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions=TEST_PARTITIONS))
        # 60 s, not the CLI's 15: under the full suite's load a fresh broker took longer than 15 s
        # to create __consumer_offsets (50 partitions) and answer the first group request at all.
        reader = GroupReader(kafka, timeout_s=60)
        status = reader.status("fresh.facestream-detector", "fresh." + topics.FRAMES)
    assert status.state in {"DEAD", "EMPTY"}  # no member has ever joined
    assert [p.partition for p in status.partitions] == [0, 1]
    assert all(p.committed is None and p.lag == 0 for p in status.partitions)
