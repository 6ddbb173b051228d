"""`facestream topics` and `facestream cameras`: Kafka-side set-up."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.errors import ConfigError
from facestream.settings import KafkaSettings


def register(sub: Any) -> None:
    topics_p = sub.add_parser("topics", help="create the Kafka topics")
    tsub = topics_p.add_subparsers(dest="topics_command", required=True, parser_class=OneLineParser)
    create = tsub.add_parser("create", help="create every topic with its partitions and retention")
    create.add_argument(
        "--partitions",
        default="",
        metavar="TOPIC=N,...",
        help="override partition counts, e.g. frames=24,faces=24",
    )
    create.add_argument(
        "--retention-ms", default="", metavar="TOPIC=MS,...", help="override retention, e.g. frames=300000"
    )
    add_settings(create, KafkaSettings)
    create.set_defaults(handler=create_topics)

    cameras_p = sub.add_parser("cameras", help="publish camera configs to the cameras topic")
    csub = cameras_p.add_subparsers(dest="cameras_command", required=True, parser_class=OneLineParser)
    put = csub.add_parser("put", help="publish camera configs (a JSON list) to the cameras topic")
    put.add_argument("--file", required=True, type=Path, help="JSON list of camera configs")
    add_settings(put, KafkaSettings)
    put.set_defaults(handler=put_cameras)
    remove = csub.add_parser("remove", help="remove cameras (publishes tombstones)")
    remove.add_argument("camera_ids", nargs="+", metavar="CAMERA_ID")
    add_settings(remove, KafkaSettings)
    remove.set_defaults(handler=remove_cameras)


def pairs(text: str, what: str) -> dict[str, int]:
    """`a=1,b=2` → {"a": 1, "b": 2}; anything else is a one-line ConfigError."""
    out: dict[str, int] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise ConfigError(f"{what}: expected TOPIC=NUMBER, got {item!r}")
        out[name] = int(value)
    return out


def create_topics(args: argparse.Namespace) -> int:
    from facestream.transport.kafka import ensure_topics
    from facestream.transport.topics import catalogue

    kafka = settings_from(args, KafkaSettings)
    try:
        specs = catalogue(
            kafka.topic_prefix,
            pairs(args.partitions, "--partitions"),
            pairs(args.retention_ms, "--retention-ms"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    created = set(ensure_topics(kafka, specs))
    for spec in specs:
        emit(
            {
                "topic": spec.name,
                "partitions": spec.partitions,
                "created": spec.name in created,
                **spec.config(),
            }
        )
    return 0


def put_cameras(args: argparse.Namespace) -> int:
    from facestream import codec
    from facestream.camera.spec import load_cameras
    from facestream.transport import topics
    from facestream.transport.kafka import KafkaProducer

    kafka = settings_from(args, KafkaSettings)
    cameras = load_cameras(args.file)
    producer = KafkaProducer(kafka)
    for camera in cameras:
        producer.produce(
            kafka.topic_prefix + topics.CAMERAS,
            codec.CAMERAS.encode(camera),  # schemas/cameras; the sampler also reads JSON
            key=camera.camera_id.encode(),
        )
    producer.flush(30)
    for camera in cameras:
        emit({"camera_id": camera.camera_id, "url": camera.redacted_url, "published": True})
    return 0


def remove_cameras(args: argparse.Namespace) -> int:
    from facestream.transport import topics
    from facestream.transport.kafka import KafkaProducer

    kafka = settings_from(args, KafkaSettings)
    producer = KafkaProducer(kafka)
    for camera_id in args.camera_ids:
        producer.produce(kafka.topic_prefix + topics.CAMERAS, b"", key=camera_id.encode())
    producer.flush(30)
    for camera_id in args.camera_ids:
        emit({"camera_id": camera_id, "removed": True})
    return 0
