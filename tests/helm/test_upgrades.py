"""Upgrades one service at a time (issue 13): each service's own image tag or digest, and the order
docs/operations.md gives (consumers before producers) checked against the chart's own Kafka ACLs."""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

from tests.fixtures.helm import CHART, CI_VALUES, REPO, Obj, Rendered, RenderResult

Render = Callable[..., RenderResult]
MINIMAL, GPU = (next(p for p in CI_VALUES if word in p.name) for word in ("minimal", "gpu"))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
REPOSITORY = VALUES["image"]["repository"]
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
DIGEST = "sha256:" + "c" * 64


def images(objects: list[Obj]) -> dict[str, set[str]]:
    """component → every image its Deployment's pod runs (init containers too)."""
    out = {}
    for d in (o for o in objects if o["kind"] == "Deployment"):
        spec = d["spec"]["template"]["spec"]
        out[d["metadata"]["labels"]["app.kubernetes.io/component"]] = {
            c["image"] for c in spec.get("initContainers", []) + spec["containers"]
        }
    return out


def ok(result: RenderResult) -> list[Obj]:
    assert result.returncode == 0, result.stderr
    return result.objects


def test_one_service_moves_while_the_others_stay(render: Render) -> None:
    objects = ok(
        render(MINIMAL, ["image.tag=0.1.0", "detector.image.tag=0.2.0", "review.image.digest=" + DIGEST])
    )
    got = images(objects)
    assert got["detector"] == {f"{REPOSITORY}:0.2.0"}, "its models init container runs the same image"
    assert got["review"] == {f"{REPOSITORY}@{DIGEST}"}
    for comp in ("frame-sampler", "embedder", "matcher"):
        assert got[comp] == {f"{REPOSITORY}:0.1.0"}, comp
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REPOSITORY}:0.1.0"


def test_without_overrides_every_service_runs_the_release_image(rendered: dict[str, Rendered]) -> None:
    got = images(rendered["01-minimal"].objects)
    assert set(got) == {"frame-sampler", "detector", "embedder", "matcher", "review"}
    assert all(i == {f"{REPOSITORY}:{APP_VERSION}"} for i in got.values()), got


def test_the_gpu_embedder_follows_its_own_tag(render: Render) -> None:
    got = images(ok(render(GPU, ["image.tag=0.1.0", "embedder.image.tag=0.2.0"])))
    assert got["embedder"] == {f"{REPOSITORY}:0.2.0-gpu"}
    assert got["detector"] == {f"{REPOSITORY}:0.1.0"}
    refused = render(GPU, [f"embedder.image.digest={DIGEST}"])
    assert refused.returncode != 0 and "embedder.gpu.image.digest" in refused.stderr, refused.stderr


def test_bad_overrides_are_refused(render: Render) -> None:
    for bad in ("detector.image.tag=-rc1", "detector.image.digest=sha256:abc", "matcher.image.repository=x"):
        result = render(MINIMAL, [bad])
        assert result.returncode != 0, bad
        assert "image" in result.stderr, result.stderr


def test_documented_upgrade_order_puts_every_consumer_before_its_producers(
    rendered: dict[str, Rendered],
) -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    section = text[text.index("## Upgrades and rollback") :]
    match = re.search(r"^Upgrade order: (.+)$", section, flags=re.MULTILINE)
    assert match, "docs/operations.md states no upgrade order"
    order = [s.strip() for s in match.group(1).split(",")]

    # Who reads and who writes each topic, from the KafkaUsers' least-privilege ACLs.
    reads: dict[str, set[str]] = {}
    writes: dict[str, set[str]] = {}
    for user in rendered["03-strimzi"].of_kind("KafkaUser"):
        comp = user["metadata"]["labels"]["app.kubernetes.io/component"]
        for acl in user["spec"]["authorization"]["acls"]:
            res = acl["resource"]
            if res["type"] != "topic" or res["patternType"] != "literal":
                continue
            if "Read" in acl["operations"]:
                reads.setdefault(res["name"], set()).add(comp)
            if "Write" in acl["operations"]:
                writes.setdefault(res["name"], set()).add(comp)
    assert sorted(order) == sorted({c for cs in [*reads.values(), *writes.values()] for c in cs})
    pairs = 0
    for topic, consumers in reads.items():
        for consumer in consumers:
            for producer in writes.get(topic, set()) - {consumer}:
                assert order.index(consumer) < order.index(producer), f"{topic}: {consumer} after {producer}"
                pairs += 1
    assert pairs >= 4  # frames, faces, embeddings, matches
    # The per-service keys the section tells operators to set exist in the values.
    for key in re.findall(r"--set (\w+)\.image\.tag=", section):
        assert "image" in VALUES[key], key
