"""How long `RangeReader.read` takes over a one-offset gap of a transactional topic (a commit
marker, with later messages present): the episode step does one such read per matcher
transaction, one after another, so this bounds the transactions a second it can follow.

    PYTHONPATH=. .venv/bin/python load-tests/gap_read.py

Starts a broker of its own (scripts/kafka.sh), writes 60 transactions of 3 records, reads 50
marker offsets; prints the median and max wall time per read. Measured 2026-12-05 on the 2-core
machine: 200.9 ms median with fetch.wait.max.ms 50 and 200 ms polls, 10.9 ms with 5 ms and 10 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from facestream.settings import KafkaSettings
from facestream.transport.kafka import RangeReader
from tests.fixtures.kafka import running_broker

TRANSACTIONS, PER_TRANSACTION, READS = 60, 3, 50


def main() -> None:
    from confluent_kafka import Producer

    with running_broker(Path(tempfile.mkdtemp(prefix="gap-read-"))) as bootstrap:
        settings = KafkaSettings(bootstrap_servers=bootstrap)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("gaps", 1, 1)])["gaps"].result()
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "gap-read"})
        producer.init_transactions(30)
        for _ in range(TRANSACTIONS):  # offsets: m m m C m m m C ...
            producer.begin_transaction()
            for _ in range(PER_TRANSACTION):
                producer.produce("gaps", value=b"x", key=b"k")
            producer.commit_transaction(30)
        reader = RangeReader(settings)
        wall_ms = []
        try:
            for k in range(READS):
                marker = PER_TRANSACTION + k * (PER_TRANSACTION + 1)
                started = time.perf_counter()
                found = reader.read("gaps", 0, marker, marker + 1)
                wall_ms.append((time.perf_counter() - started) * 1000)
                assert found == [], f"offset {marker} is not a commit marker: {found}"
        finally:
            reader.close()
        print(
            f"gap read over one commit marker: median {statistics.median(wall_ms):.1f} ms, "
            f"max {max(wall_ms):.1f} ms (wall), n={len(wall_ms)}"
        )


if __name__ == "__main__":
    main()
