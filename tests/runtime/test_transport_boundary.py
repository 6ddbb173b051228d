"""The runner is transport-neutral: importing it must not load the Kafka client.

The in-process (embedded) mode and its tests run without librdkafka; a stray import of
transport.kafka from the runner's modules would make every user of the runner load it.
"""

from __future__ import annotations

import subprocess
import sys

from facestream.transport.base import ReportsLag, ReportsPositions
from facestream.transport.memory import MemoryBroker


def test_importing_the_runner_does_not_import_confluent_kafka() -> None:
    code = "import facestream.runtime.runner, sys; print('confluent_kafka' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_each_consumer_offers_the_capabilities_the_runner_looks_for() -> None:
    """The runner finds lag and positions by isinstance: a renamed method would silently lose them."""
    from facestream.transport.kafka import KafkaConsumer

    consumer = MemoryBroker().consumer("g")
    assert isinstance(consumer, ReportsLag)
    assert not isinstance(consumer, ReportsPositions)
    assert issubclass(KafkaConsumer, ReportsLag)
    assert issubclass(KafkaConsumer, ReportsPositions)
