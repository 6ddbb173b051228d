"""Kafka settings shared by the examples: what a downstream consumer of facestream must set."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message


def add_kafka_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--topic-prefix", default="", help="the deployment's topic prefix, e.g. city1.")
    parser.add_argument("--group", help="consumer group (default: <prefix><the example's name>)")
    parser.add_argument(
        "-X",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any librdkafka setting, e.g. -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512",
    )


def consumer_config(args: argparse.Namespace, default_group: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group or args.topic_prefix + default_group,
        # matches and alerts are written in transactions: never act on an aborted one.
        "isolation.level": "read_committed",
        # commit only what was handled (printed, delivered): a crash re-reads, never skips.
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    for item in args.extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"-X {item}: expected KEY=VALUE")
        config[key] = value
    return config


def records(
    consumer: Consumer,
    *,
    stopped: Callable[[], bool],
    stop_when_idle_s: float | None,
    on_error: Callable[[str], None],
) -> Iterator[Message]:
    """The records `consumer` is given, until `stopped()` or nothing new came for `stop_when_idle_s`.

    A Kafka error the client reports (a broker unreachable, a refused login) goes to `on_error`;
    librdkafka goes on retrying by itself, so the loop goes on too.
    """
    last_new = time.monotonic()
    while not stopped():
        if stop_when_idle_s is not None and time.monotonic() - last_new > stop_when_idle_s:
            return
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                on_error(error.str())
            continue
        last_new = time.monotonic()
        yield message
