"""A Kafka client that cannot reach its broker says so as a warning naming the address, once per
`CONNECTION_LOG_EVERY_S` while it lasts; a refusal only an operator can fix is an error."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from confluent_kafka import KafkaError

from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaConsumer
from facestream.transport.kafka.client import CONNECTION_LOG_EVERY_S, ClientErrors

LOGGER = "facestream.transport.kafka.client"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_errors_warn_naming_the_broker_at_most_every_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    report = ClientErrors("kafka-0.kafka:9092", clock=lambda: now[0])
    refused = KafkaError(KafkaError._TRANSPORT, "kafka-0.kafka:9092/0: Connect failed: Connection refused")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        report(refused)
        now[0] += CONNECTION_LOG_EVERY_S - 1
        report(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
        now[0] += 1
        report(refused)
        report(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: wrong password"))
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [level for level, _ in levels] == ["WARNING", "DEBUG", "WARNING", "ERROR"]
    assert all("kafka at kafka-0.kafka:9092" in m for level, m in levels if level != "DEBUG")
    assert "wrong password" in levels[3][1]


@pytest.mark.slow  # a real librdkafka client, for 6 s, against a port nothing listens on
def test_a_consumer_that_cannot_connect_warns_once_with_the_address(caplog: pytest.LogCaptureFixture) -> None:
    address = f"127.0.0.1:{closed_port()}"
    consumer = KafkaConsumer(KafkaSettings(bootstrap_servers=address), "nobody")
    try:
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            consumer.subscribe(["frames"])
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                consumer.consume(10, 0.5)
    finally:
        consumer.close()
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"kafka at {address}: cannot connect" in warnings[0]
    assert len(records) > 1  # librdkafka said it more than once; the rest went to debug
