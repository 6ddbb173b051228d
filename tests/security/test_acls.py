"""The ACLs the broker script applies (scripts/kafka/acls.txt) are the ones the chart's Strimzi
KafkaUsers grant: the same principals, topics, groups and operations, with and without a topic
prefix. The chart sets every service's group without a prefix (FACESTREAM_GROUP_ID), so the file
is expanded with group prefix "" here.

Transactional ids included: the file and the chart grant each transactional stage the prefix
`<group>.` (runtime/service.py names its producer <group>.<replica>); see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.helm import CI_VALUES, RenderResult

ACLS = Path(__file__).resolve().parents[2] / "scripts" / "kafka" / "acls.txt"
STRIMZI = next(p for p in CI_VALUES if "strimzi" in p.name)

Acl = tuple[str, str, str, str]
"""(resource type, pattern type, name, operation), in the chart's vocabulary."""

TYPES = {"topic": "topic", "group": "group", "transactional-id": "transactionalId", "cluster": "cluster"}
PATTERNS = {"literal": "literal", "prefixed": "prefix"}


def from_file(topic_prefix: str, group_prefix: str) -> dict[str, set[Acl]]:
    out: dict[str, set[Acl]] = {}
    for line in ACLS.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        principal, kind, pattern, name, operations = line.split()
        name = name.replace("{p}", topic_prefix).replace("{g}", group_prefix)
        for op in operations.split(","):
            out.setdefault(principal, set()).add((TYPES[kind], PATTERNS[pattern], name, op))
    return out


def from_chart(result: RenderResult) -> dict[str, set[Acl]]:
    assert result.returncode == 0, result.stderr
    out: dict[str, set[Acl]] = {}
    for user in (o for o in result.objects if o["kind"] == "KafkaUser"):
        service = user["metadata"]["labels"]["app.kubernetes.io/component"]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            for op in acl["operations"]:
                out.setdefault(service, set()).add(
                    (resource["type"], resource["patternType"], resource["name"], op)
                )
    return out


@pytest.mark.parametrize("prefix", ["", "city1."])
def test_the_broker_scripts_acls_are_the_charts(render: Callable[..., RenderResult], prefix: str) -> None:
    chart = from_chart(render(STRIMZI, [f"kafka.topicPrefix={prefix}"]))
    ours = from_file(prefix, prefix)  # the chart prefixes groups as the services do
    assert set(chart) == set(ours) == {"frame-sampler", "detector", "embedder", "matcher", "review"}
    for service in ours:
        assert chart[service] == ours[service], (service, chart[service] ^ ours[service])
    transactional = {s for s, acls in chart.items() if any(a[0] == "transactionalId" for a in acls)}
    assert transactional == {"detector", "embedder", "matcher"}


def test_every_service_writes_only_its_own_outputs_and_dead_letters() -> None:
    """Least privilege, read from the file itself: no wildcard, no cluster rights, no foreign DLQ."""
    ours = from_file("", "")
    for service, acls in ours.items():
        assert not any(a[0] == "cluster" or a[2] in ("", "*") for a in acls), service
        writes = {a[2] for a in acls if a[0] == "topic" and a[3] == "Write" and a[1] == "literal"}
        assert {w for w in writes if w.startswith("dlq.")} <= {f"dlq.{service}", "dlq.episodes"}, service
    assert not any(
        a[2] == "frames" for a in ours["matcher"] | ours["review"]
    )  # nobody downstream sees frames
