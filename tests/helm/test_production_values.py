"""ci/05-production-values.yaml: the production example (zones, priorities, per-service resources,
the external Milvus, the GPU embedder with its RuntimeClass, KEDA) renders what it says, is sized
as docs/capacity.md's 1,000-camera row, and goes through every check the other ci/ files do."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from tests.fixtures.helm import CHART, CI_VALUES, REPO, Obj, Rendered, RenderResult

Render = Callable[..., RenderResult]
PRODUCTION = CHART / "ci" / "05-production-values.yaml"
VALUES = yaml.safe_load(PRODUCTION.read_text())
KEYS = {
    "frame-sampler": "frameSampler",
    "detector": "detector",
    "embedder": "embedder",
    "matcher": "matcher",
    "review": "review",
}
INPUT = {"frame-sampler": "cameras", "detector": "frames", "embedder": "faces", "matcher": "embeddings"}


def deployments(variant: Rendered) -> dict[str, Obj]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in variant.of_kind("Deployment")}


def pod(d: Obj) -> dict[str, Any]:
    return dict(d["spec"]["template"]["spec"])


def test_the_loops_over_ci_files_include_it(rendered: dict[str, Rendered]) -> None:
    """lint --strict, kubernetes-validate, the CRD schemas and every workload test loop over these."""
    assert PRODUCTION in CI_VALUES
    assert "05-production" in rendered


def test_every_service_has_its_priority_and_resources(rendered: dict[str, Rendered]) -> None:
    pods = deployments(rendered["05-production"])
    assert set(pods) == set(KEYS)
    for comp, d in pods.items():
        values = VALUES[KEYS[comp]]
        expected = values.get("priorityClassName", VALUES["serviceDefaults"]["priorityClassName"])
        assert pod(d)["priorityClassName"] == expected, comp
        resources = pod(d)["containers"][0]["resources"]
        for section in ("requests", "limits"):
            for name, quantity in values["resources"][section].items():
                assert str(resources[section][name]) == str(quantity), (comp, section, name)
    assert pod(pods["review"])["priorityClassName"] == "facestream-review"


def test_zones_are_enforced_and_nodes_preferred(rendered: dict[str, Rendered]) -> None:
    for comp, d in deployments(rendered["05-production"]).items():
        policy = {s["topologyKey"]: s["whenUnsatisfiable"] for s in pod(d)["topologySpreadConstraints"]}
        assert policy == {
            "topology.kubernetes.io/zone": "DoNotSchedule",
            "kubernetes.io/hostname": "ScheduleAnyway",
        }, comp


def test_the_gpu_embedder_runs_with_its_runtime_class(rendered: dict[str, Rendered]) -> None:
    pods = deployments(rendered["05-production"])
    embedder = pod(pods["embedder"])
    assert embedder["runtimeClassName"] == "nvidia"
    container = embedder["containers"][0]
    assert container["image"].endswith("-gpu")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FACESTREAM_MODEL_EXECUTION_PROVIDER"] == "cuda"
    for comp in ("frame-sampler", "detector", "matcher", "review"):
        assert "runtimeClassName" not in pod(pods[comp]), comp


def test_the_gallery_is_the_external_milvus_with_its_token(rendered: dict[str, Rendered]) -> None:
    variant = rendered["05-production"]
    assert not variant.of_kind("StatefulSet"), "no in-chart Milvus Lite pod in production"
    matcher = pod(deployments(variant)["matcher"])["containers"][0]
    env = {e["name"]: e for e in matcher["env"]}
    assert env["FACESTREAM_GALLERY"]["value"] == VALUES["gallery"]["external"]["uri"]
    assert env["FACESTREAM_GALLERY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "milvus-token"
    assert env["FACESTREAM_GALLERY_INDEX_TYPE"]["value"] == "HNSW"


def test_keda_scales_every_stage_up_to_its_partitions_with_a_replica_per_zone(
    rendered: dict[str, Rendered],
) -> None:
    variant = rendered["05-production"]
    scaled = {
        s["metadata"]["labels"]["app.kubernetes.io/component"]: s for s in variant.of_kind("ScaledObject")
    }
    assert set(scaled) == set(INPUT)
    for comp, topic in INPUT.items():
        spec = scaled[comp]["spec"]
        assert spec["maxReplicaCount"] == VALUES["topics"]["catalogue"][topic]["partitions"], comp
        assert spec["minReplicaCount"] >= 3, f"{comp}: fewer replicas than zones"
    assert not variant.of_kind("HorizontalPodAutoscaler")


def test_sized_as_the_capacity_rows_1000_cameras() -> None:
    capacity = (REPO / "docs" / "capacity.md").read_text()
    assert "helm/facestream/ci/05-production-values.yaml" in capacity
    row = re.search(r"^- \*\*1,000 cameras:\*\*(.+?)(?=^- \*\*)", capacity, flags=re.MULTILINE | re.DOTALL)
    assert row, "docs/capacity.md has no values for 1,000 cameras"
    text = row.group(1)
    for key, stage in (
        ("frameSampler", "cameras"),
        ("detector", "frames"),
        ("embedder", "faces"),
        ("matcher", "embeddings"),
    ):
        replicas = re.search(rf"`{key}\.autoscaling\.maxReplicas=(\d+)`", text)
        partitions = re.search(rf"`(?:topics\.catalogue\.)?{stage}\.partitions=(\d+)`", text)
        assert replicas and partitions, key
        assert VALUES[key]["autoscaling"]["maxReplicas"] == int(replicas.group(1)), key
        assert VALUES["topics"]["catalogue"][stage]["partitions"] == int(partitions.group(1)), stage


def test_priority_and_zone_policy_are_values_any_service_overrides(render: Render) -> None:
    result = render(
        CI_VALUES[0],
        [
            "serviceDefaults.priorityClassName=city-high",
            "detector.priorityClassName=city-low",
            "matcher.topologySpread.whenUnsatisfiableByKey.kubernetes\\.io/hostname=DoNotSchedule",
        ],
    )
    assert result.returncode == 0, result.stderr
    pods = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in result.objects
        if d["kind"] == "Deployment"
    }
    assert pod(pods["detector"])["priorityClassName"] == "city-low"
    assert pod(pods["embedder"])["priorityClassName"] == "city-high"
    matcher = {
        s["topologyKey"]: s["whenUnsatisfiable"] for s in pod(pods["matcher"])["topologySpreadConstraints"]
    }
    assert matcher["kubernetes.io/hostname"] == "DoNotSchedule"
    assert matcher["topology.kubernetes.io/zone"] == "ScheduleAnyway"
    for bad in (
        "detector.priorityClassName=Not_A_Name",
        "serviceDefaults.topologySpread.whenUnsatisfiableByKey.x=Never",
    ):
        refused = render(CI_VALUES[0], [bad])
        assert refused.returncode != 0, bad


def test_milvus_lite_is_called_a_single_point_of_failure() -> None:
    values = (CHART / "values.yaml").read_text()
    comment = values[values.index("gallery:") : values.index("  mode: server")]
    assert "single point of failure" in comment and "external" in comment
    assert "PodDisruptionBudget" in comment and "backs up" in comment and "metrics" in comment
