"""Deployments as `facestream cluster status` reads them, from the chart's real rendered objects
turned into the kubernetes client's model objects."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from facestream.runtime.workloads import release_selector, workloads
from tests.fixtures.helm import RELEASE, Rendered


def as_model(obj: dict[str, Any]) -> Any:
    # The client's own deserializer, as for an API response (private, but it is the real one).
    return client.ApiClient()._ApiClient__deserialize(obj, "V1Deployment")  # type: ignore[attr-defined]


def test_reads_the_charts_deployments(rendered: dict[str, Rendered]) -> None:
    variant = rendered["01-minimal"]
    deployments = [as_model(d) for d in variant.of_kind("Deployment")]
    deployments[0].status = client.V1DeploymentStatus(
        ready_replicas=1, available_replicas=1, updated_replicas=1
    )
    found = workloads(deployments)
    assert set(found) == {"frame-sampler", "detector", "embedder", "matcher", "review"}
    detector = found["detector"]
    assert detector.name == f"{RELEASE}-facestream-detector" and detector.desired == 1
    assert detector.setting("FACESTREAM_GROUP_ID") == "facestream-detector"
    assert found["matcher"].setting("FACESTREAM_MATCHER_EPISODES_APP_ID") == "facestream-episodes"
    first = found[deployments[0].metadata.labels["app.kubernetes.io/component"]]
    assert (first.ready, first.available, first.updated) == (1, 1, 1)
    assert found["embedder"].ready == 0, "no status yet: nothing ready"
    assert found["embedder"].setting("FACESTREAM_KAFKA_SASL_PASSWORD") is None


def test_selector_matches_the_chart_labels(rendered: dict[str, Rendered]) -> None:
    wanted = dict(kv.split("=") for kv in release_selector(RELEASE).split(","))
    for deployment in rendered["02-keda"].of_kind("Deployment"):
        assert deployment["metadata"]["labels"].items() >= wanted.items()


def test_autoscaled_deployments_count_as_one_desired_until_scaled() -> None:
    d = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="x", labels={"app.kubernetes.io/component": "embedder"}),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(),
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(containers=[client.V1Container(name="c")])
            ),
        ),
    )
    unlabelled = client.V1Deployment(metadata=client.V1ObjectMeta(name="other", labels={}), spec=d.spec)
    found = workloads([d, unlabelled])
    assert list(found) == ["embedder"] and found["embedder"].desired == 1 and found["embedder"].env == ()
