"""Every rendered object validates offline: core kinds with kubernetes-validate (strict, at the
chart's oldest and newest supported Kubernetes), custom resources against the CRD schemas of the
operators that own them (prometheus-operator, KEDA, Strimzi)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.fixtures.helm import K8sTools, Rendered

KUBE_VERSIONS = ("1.27", "1.37")  # Chart.yaml kubeVersion >=1.27; kubernetes-validate's newest
CUSTOM_GROUPS = ("monitoring.coreos.com/", "keda.sh/", "kafka.strimzi.io/")
EXPECTED_CUSTOM_KINDS = {
    "ServiceMonitor",
    "PrometheusRule",
    "ScaledObject",
    "TriggerAuthentication",
    "KafkaTopic",
    "KafkaUser",
}


@pytest.fixture(scope="module")
def kubernetes_validate(k8s_tools: K8sTools) -> Any:
    """Installed by scripts/k8s-tools.sh (which k8s_tools runs), so imported only after it."""
    import kubernetes_validate

    return kubernetes_validate


def is_custom(obj: dict[str, Any]) -> bool:
    return str(obj["apiVersion"]).startswith(CUSTOM_GROUPS)


def test_core_objects_validate_strictly(rendered: dict[str, Rendered], kubernetes_validate: Any) -> None:
    checked = 0
    for variant in rendered.values():
        for obj in variant.objects:
            if is_custom(obj):
                continue
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{variant.name}: {obj['kind']} {obj['metadata']['name']} @ {version}: {exc}")
            checked += 1
    assert checked > 100


def test_custom_resources_validate_against_their_crds(
    rendered: dict[str, Rendered], crd_schemas: dict[tuple[str, str], Any]
) -> None:
    seen = set()
    for variant in rendered.values():
        for obj in variant.objects:
            if not is_custom(obj):
                continue
            validator = crd_schemas.get((obj["apiVersion"], obj["kind"]))
            assert validator is not None, f"no served CRD version for {obj['apiVersion']} {obj['kind']}"
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            assert not errors, f"{variant.name}: {obj['kind']} {obj['metadata']['name']}: " + "; ".join(
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
            )
            seen.add(obj["kind"])
    assert seen == EXPECTED_CUSTOM_KINDS


def test_validators_reject_what_an_api_server_would(
    rendered: dict[str, Rendered], crd_schemas: dict[tuple[str, str], Any], kubernetes_validate: Any
) -> None:
    """The checks bite: an unknown field or a wrong type in a rendered object is caught."""
    objects = [o for v in rendered.values() for o in v.objects]
    for kind in EXPECTED_CUSTOM_KINDS:
        obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
        validator = crd_schemas[(obj["apiVersion"], obj["kind"])]
        obj["spec"]["notAField"] = True
        assert not validator.is_valid(obj), f"{kind}: an unknown spec field passed"
    scaled = copy.deepcopy(next(o for o in objects if o["kind"] == "ScaledObject"))
    scaled["spec"]["maxReplicaCount"] = "twelve"
    assert not crd_schemas[(scaled["apiVersion"], "ScaledObject")].is_valid(scaled)
    topic = copy.deepcopy(next(o for o in objects if o["kind"] == "KafkaTopic"))
    topic["spec"]["partitions"] = 0
    assert not crd_schemas[(topic["apiVersion"], "KafkaTopic")].is_valid(topic)

    deployment = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)
