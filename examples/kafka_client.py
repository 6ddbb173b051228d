"""Kafka settings shared by the examples: what a downstream consumer of facestream must set."""

from __future__ import annotations

import argparse
from typing import Any


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
