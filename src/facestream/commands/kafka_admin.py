"""`facestream topics` and `facestream cameras`: Kafka-side set-up."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.errors import ConfigError, FacestreamError
from facestream.settings import KafkaSettings

if TYPE_CHECKING:
    from facestream.transport.topics import TopicSpec

log = logging.getLogger(__name__)

CLEANUP_POLICIES = {"delete", "compact", "compact,delete", "delete,compact"}


def register(sub: Any) -> None:
    topics_p = sub.add_parser("topics", help="create the Kafka topics")
    tsub = topics_p.add_subparsers(
        dest="topics_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    create = tsub.add_parser(
        "create",
        help="create every topic with its partitions and configs, and bring existing ones to them",
        description="Creates missing topics. Existing topics get the declared cleanup.policy, "
        "retention.ms, segment.ms and max.message.bytes, and more partitions if fewer than declared; "
        "fewer partitions or another replication factor cannot be applied and are reported on stderr.",
    )
    create.add_argument(
        "--partitions",
        default="",
        metavar="TOPIC=N,...",
        help="override partition counts, e.g. frames=24,faces=24",
    )
    create.add_argument(
        "--retention-ms", default="", metavar="TOPIC=MS,...", help="override retention, e.g. frames=300000"
    )
    create.add_argument(
        "--segment-ms",
        default="",
        metavar="TOPIC=MS,...",
        help="override segment.ms, e.g. frames=60000 (default: the catalogue's, at most retention/5)",
    )
    create.add_argument(
        "--cleanup-policy",
        default="",
        metavar="TOPIC=POLICY,...",
        help="override cleanup.policy (delete, compact or compact,delete), e.g. cameras=compact,hits=delete",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        metavar="N",
        help="replication factor of the topics created (default -1: the brokers' default.replication.factor)",
    )
    add_settings(create, KafkaSettings)
    create.set_defaults(handler=create_topics)

    cameras_p = sub.add_parser("cameras", help="publish camera configs to the cameras topic")
    csub = cameras_p.add_subparsers(
        dest="cameras_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
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


def policies(text: str, what: str) -> dict[str, str]:
    """`a=compact,delete,b=delete` → {"a": "compact,delete", "b": "delete"}: a policy may itself hold
    a comma, so an item without `=` continues the previous topic's policy."""
    out: dict[str, str] = {}
    last = ""
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, sep, value = item.partition("=")
        if sep:
            last = name
            out[name] = value
        elif last:
            out[last] += "," + item
        else:
            raise ConfigError(f"{what}: expected TOPIC=POLICY, got {item!r}")
    for name, policy in out.items():
        if policy not in CLEANUP_POLICIES:
            raise ConfigError(f"{what}: {name}={policy!r} is not delete, compact or compact,delete")
    return out


def declared_specs(args: argparse.Namespace, prefix: str) -> list[TopicSpec]:
    """The catalogue with every override of the command line applied."""
    from facestream.transport.topics import CATALOGUE, catalogue

    segment_ms = pairs(args.segment_ms, "--segment-ms")
    cleanup = policies(args.cleanup_policy, "--cleanup-policy")
    unknown = (set(segment_ms) | set(cleanup)) - {t.name for t in CATALOGUE}
    if unknown:
        raise ConfigError(f"unknown topic(s): {', '.join(sorted(unknown))}")
    for name, ms in segment_ms.items():
        if ms < 1000:
            raise ConfigError(f"--segment-ms: {name}={ms} is below 1000")
    if args.replication_factor == 0 or args.replication_factor < -1:
        raise ConfigError("--replication-factor: expected a positive number, or -1 for the brokers' default")
    try:
        specs = catalogue(
            prefix,
            pairs(args.partitions, "--partitions"),
            pairs(args.retention_ms, "--retention-ms"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out = []
    for spec in specs:
        base = spec.name.removeprefix(prefix)
        out.append(
            dataclasses.replace(
                spec,
                segment_ms=segment_ms.get(base, spec.segment_ms),
                cleanup_policy=cast(Any, cleanup.get(base, spec.cleanup_policy)),
            )
        )
    return out


def create_topics(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from facestream.transport.kafka import create_missing_topics

    kafka = settings_from(args, KafkaSettings)
    specs = declared_specs(args, kafka.topic_prefix)
    wanted = [
        NewTopic(
            s.name, num_partitions=s.partitions, replication_factor=args.replication_factor, config=s.config()
        )
        for s in specs
    ]
    created = set(create_missing_topics(kafka, wanted))
    existing = [s for s in specs if s.name not in created]
    changes = reconcile(kafka, existing, args.replication_factor) if existing else {}
    for spec in specs:
        change = changes.get(spec.name, {})
        emit(
            {
                "topic": spec.name,
                "partitions": change.get("partitions", spec.partitions),
                "created": spec.name in created,
                "altered": change.get("altered", []),
                **spec.config(),
            }
        )
    return 0


def reconcile(kafka: KafkaSettings, specs: list[TopicSpec], replication_factor: int) -> dict[str, Any]:
    """Bring existing topics to their declared configs and (growing only) partitions.

    Returns, per topic, the config keys altered and the partitions it has afterwards. Fewer
    partitions than it has, or another replication factor, cannot be applied by a client: each is
    logged as a warning and left as it is.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
    )

    from facestream.transport.kafka import client_config

    admin = AdminClient(client_config(kafka))
    timeout_s = 30
    metadata = admin.list_topics(timeout=timeout_s).topics
    resources = [ConfigResource("topic", s.name) for s in specs]
    try:
        current = {
            resource.name: future.result(timeout=timeout_s)
            for resource, future in admin.describe_configs(resources, request_timeout=timeout_s).items()
        }
    except KafkaException as exc:
        raise FacestreamError(f"reading the existing topics' configs: {exc}") from None
    out: dict[str, Any] = {}
    alter = []
    grow = []
    for spec in specs:
        topic = metadata[spec.name]
        have = len(topic.partitions)
        replicas = {len(p.replicas) for p in topic.partitions.values()}
        result: dict[str, Any] = {"partitions": have, "altered": []}
        if spec.partitions > have:
            grow.append(NewPartitions(spec.name, spec.partitions))
            result["partitions"] = spec.partitions
        elif spec.partitions < have:
            log.warning(
                "%s has %d partitions, %d declared: Kafka cannot remove partitions; left at %d",
                spec.name,
                have,
                spec.partitions,
                have,
            )
        if replication_factor > 0 and replicas != {replication_factor}:
            log.warning(
                "%s has replication factor %s, %d declared: change it with a partition reassignment "
                "(kafka-reassign-partitions.sh); left as it is",
                spec.name,
                "/".join(str(r) for r in sorted(replicas)),
                replication_factor,
            )
        entries = current[spec.name]
        differ = sorted(k for k, v in spec.config().items() if k not in entries or entries[k].value != v)
        if differ:
            result["altered"] = differ
            alter.append(
                ConfigResource(
                    "topic",
                    spec.name,
                    incremental_configs=[
                        ConfigEntry(k, spec.config()[k], incremental_operation=AlterConfigOpType.SET)
                        for k in differ
                    ],
                )
            )
        out[spec.name] = result
    try:
        if alter:
            for future in admin.incremental_alter_configs(alter, request_timeout=timeout_s).values():
                future.result(timeout=timeout_s)
        if grow:
            for future in admin.create_partitions(grow, request_timeout=timeout_s).values():
                future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise FacestreamError(f"bringing existing topics to their declared config: {exc}") from None
    return out


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
