"""The chart renders and lints for every ci/*-values.yaml, with a real helm."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.helm import CHART, CI_VALUES, K8sTools, Rendered

VARIANTS = {"minimal", "keda", "strimzi", "gpu-embedder", "production"}


def test_ci_values_cover_every_variant() -> None:
    names = {p.name.removesuffix("-values.yaml").split("-", 1)[1] for p in CI_VALUES}
    assert names >= VARIANTS, f"ci/ lacks {VARIANTS - names}"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(k8s_tools: K8sTools, values: Path) -> None:
    done = subprocess.run(
        [str(k8s_tools.helm), "lint", "--strict", str(CHART), "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout
    # A template `fail` only shows as [INFO] in lint output: make sure nothing failed to render.
    assert "Fail:" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_every_variant_renders_the_services(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        components = {
            d["metadata"]["labels"]["app.kubernetes.io/component"] for d in variant.of_kind("Deployment")
        }
        assert components == {"frame-sampler", "detector", "embedder", "matcher", "review"}, variant.name


def test_variants_differ_where_they_should(rendered: dict[str, Rendered]) -> None:
    kinds = {name: {o["kind"] for o in r.objects} for name, r in rendered.items()}
    assert "ScaledObject" not in kinds["01-minimal"] and "HorizontalPodAutoscaler" not in kinds["01-minimal"]
    assert "ScaledObject" in kinds["02-keda"] and "HorizontalPodAutoscaler" not in kinds["02-keda"]
    assert {"KafkaTopic", "KafkaUser"} <= kinds["03-strimzi"]
    assert "Job" not in kinds["03-strimzi"], "Strimzi creates the topics: no topic Job"
    assert "Job" in kinds["01-minimal"]
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds["02-keda"]
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds["01-minimal"]
