"""`facestream cluster status`: a deployed pipeline at a glance, for operators.

Per service: its Deployment's replicas (Kubernetes API), its consumer group's members, lag and
partitions (Kafka admin API), flagging replicas beyond the partition count, which sit idle; per
frame-sampler replica: the partitions of the `cameras` topic it owns and so the cameras it runs.
One JSON object per line on stdout.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.settings import KafkaSettings
from facestream.transport import topics


@dataclass(frozen=True, slots=True)
class Stage:
    """A consuming stage as the chart deploys it: its component, default group and input topic.
    Every default group id carries the topic prefix, as the services' own defaults do
    (runtime/service.py `group_id`, the faust app ids)."""

    component: str
    group: str
    topic: str


STAGES = (
    Stage("frame-sampler", "facestream-frame-sampler", topics.CAMERAS),
    Stage("detector", "facestream-detector", topics.FRAMES),
    Stage("embedder", "facestream-embedder", topics.FACES),
    Stage("matcher", "facestream-matcher", topics.EMBEDDINGS),
    Stage("episodes", "facestream-episodes", topics.HITS),
    Stage("review", "facestream-review", topics.MATCHES),
)
GROUP_ENV = {"episodes": ("matcher", "FACESTREAM_MATCHER_EPISODES_APP_ID")}
"""Where a stage's group id is set, when not in its own Deployment's FACESTREAM_GROUP_ID."""


def register(sub: Any) -> None:
    p = sub.add_parser("cluster", help="inspect a deployed facestream (Kubernetes and Kafka)")
    csub = p.add_subparsers(
        dest="cluster_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    status = csub.add_parser(
        "status", help="replicas, consumer lag against partitions, and cameras per frame-sampler"
    )
    status.add_argument("--namespace", default="default", help="namespace of the release (default: default)")
    status.add_argument("--release", default="facestream", help="Helm release name (default: facestream)")
    status.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, then ~/.kube)")
    status.add_argument("--context", help="kubeconfig context (default: the current one)")
    status.add_argument(
        "--no-kubernetes", action="store_true", help="report Kafka only (no replicas from the cluster)"
    )
    status.add_argument("--timeout-s", type=float, default=15.0, help="per request (default 15)")
    add_settings(status, KafkaSettings)
    status.set_defaults(handler=cluster_status)


def cluster_status(args: argparse.Namespace) -> int:
    from facestream.runtime.workloads import Workload, list_deployments, workloads

    kafka = settings_from(args, KafkaSettings)
    deployed: dict[str, Workload] | None = None
    if not args.no_kubernetes:
        deployed = workloads(
            list_deployments(args.namespace, args.release, kubeconfig=args.kubeconfig, context=args.context)
        )
    for line in status_lines(kafka, deployed, timeout_s=args.timeout_s):
        emit(line)
    return 0


def group_of(stage: Stage, kafka: KafkaSettings, deployed: dict[str, Any] | None) -> str:
    owner, env = GROUP_ENV.get(stage.component, (stage.component, "FACESTREAM_GROUP_ID"))
    if deployed is not None and owner in deployed:
        configured = deployed[owner].setting(env)
        if configured:
            return str(configured)
    return kafka.topic_prefix + stage.group


def status_lines(
    kafka: KafkaSettings, deployed: dict[str, Any] | None, *, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    """The report: one line per stage, then one per frame-sampler member."""
    from facestream.transport.groups import GroupReader, GroupStatus, keys_by_partition

    reader = GroupReader(kafka, timeout_s)
    lines: list[dict[str, Any]] = []
    sampler: GroupStatus | None = None
    for stage in STAGES:
        owner = GROUP_ENV.get(stage.component, (stage.component, ""))[0]
        if deployed is not None and owner not in deployed:
            continue  # not part of this release (e.g. review disabled)
        group = reader.status(group_of(stage, kafka, deployed), kafka.topic_prefix + stage.topic)
        workload = deployed.get(stage.component) if deployed is not None else None
        line: dict[str, Any] = {
            "kind": "stage",
            "stage": stage.component,
            "group": group.group,
            "topic": group.topic,
            "state": group.state,
            "partitions": len(group.partitions),
            "members": len(group.members),
            "idle_members": group.idle_members,
            "unassigned_partitions": list(group.unassigned),
        }
        if stage.component != "frame-sampler":  # the sampler never commits `cameras`
            line["lag"] = group.lag
        if workload is not None:
            line["deployment"] = workload.name
            line["replicas"] = {
                "desired": workload.desired,
                "ready": workload.ready,
                "available": workload.available,
                "updated": workload.updated,
            }
            line["replicas_over_partitions"] = max(0, workload.desired - len(group.partitions))
        lines.append(line)
        if stage.component == "frame-sampler":
            sampler = group
    if sampler is not None:
        cameras = keys_by_partition(kafka, sampler.topic, len(sampler.partitions), timeout_s)
        for member in sampler.members:
            lines.append(
                {
                    "kind": "sampler",
                    "client_id": member.client_id,
                    "host": member.host,
                    "partitions": list(member.partitions),
                    "cameras": sorted(c for p in member.partitions for c in cameras.get(p, [])),
                }
            )
        orphaned = sorted(c for p in sampler.unassigned for c in cameras.get(p, []))
        if orphaned:
            lines.append({"kind": "cameras_unassigned", "cameras": orphaned})
    return lines
