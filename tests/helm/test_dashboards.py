"""The Grafana dashboards: every query parses (promtool), rates use Grafana's `$__rate_interval`,
every selector follows the cluster and namespace variables, and the pipeline dashboard shows
saturation per stage (CPU, throttling, memory, replicas against the autoscaler's maximum) for the
containers the chart actually runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.helm import CHART, K8sTools, Rendered
from tests.observability.promql import KUBERNETES_SERIES, dashboard_queries, rule_queries

BOARDS = sorted((CHART / "dashboards").glob("*.json"))
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^{}]*)\}")


def board(name: str) -> dict[str, Any]:
    return dict(json.loads((CHART / "dashboards" / f"{name}.json").read_text()))


def exprs(b: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in b["panels"] for t in p.get("targets", [])]


def as_prometheus(expr: str) -> str:
    """What Grafana sends: its variables substituted."""
    return expr.replace("$__rate_interval", "2m").replace("$cluster", "").replace("$namespace", "ns")


def check_rules(tools: K8sTools, queries: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query{i}", "expr": as_prometheus(q)} for i, q in enumerate(queries)]
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run(
        [str(tools.promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_dashboard_query_parses(k8s_tools: K8sTools, tmp_path: Path) -> None:
    queries = [e for b in BOARDS for _, e in exprs(json.loads(b.read_text()))]
    assert len(queries) > 40
    done = check_rules(k8s_tools, queries, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout
    broken = check_rules(k8s_tools, [*queries, "sum by (stage (rate(x[$__rate_interval]))"], tmp_path)
    assert broken.returncode != 0, "promtool accepted a query that does not parse"


def test_rates_use_the_rate_interval() -> None:
    rates = 0
    for path in BOARDS:
        for title, expr in exprs(json.loads(path.read_text())):
            for match in re.finditer(r"\b(i?rate)\(", expr):
                window = re.match(r"[^\[]*\[([^\]]*)\]", expr[match.end() :])
                assert window, f"{path.name}: {title}: {expr}"
                assert window.group(1) == "$__rate_interval", (
                    f"{path.name}: {title}: {match.group(1)}[{window.group(1)}]"
                )
                rates += 1
    assert rates > 20


def test_every_selector_follows_the_cluster_and_namespace_variables() -> None:
    for path in BOARDS:
        b = json.loads(path.read_text())
        variables = {v["name"]: v for v in b["templating"]["list"]}
        assert {"datasource", "cluster", "namespace"} <= set(variables), path.name
        assert variables["cluster"]["definition"].endswith(", cluster)"), path.name
        assert '{cluster="$cluster"}' in variables["namespace"]["definition"], (
            f"{path.name}: the namespace list does not follow the chosen cluster"
        )
        for title, expr in exprs(b):
            selectors = _SELECTOR.findall(expr)
            assert selectors, f"{path.name}: {title}: {expr}"
            for metric, matchers in selectors:
                assert 'cluster="$cluster"' in matchers and 'namespace="$namespace"' in matchers, (
                    f"{path.name}: {title}: {metric}{{{matchers}}}"
                )


def test_pipeline_dashboard_shows_saturation_of_the_charts_containers(rendered: dict[str, Rendered]) -> None:
    pipeline = exprs(board("pipeline"))
    used = {name for _, e in pipeline for name in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e)}
    for family in (
        "container_cpu_usage_seconds_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_memory_working_set_bytes",
        "kube_deployment_status_replicas_available",
        "kube_horizontalpodautoscaler_spec_max_replicas",
        "DCGM_FI_DEV_GPU_UTIL",
    ):
        assert family in used, f"the pipeline dashboard has no {family}"

    variant = rendered["02-keda"]
    containers = {
        d["spec"]["template"]["spec"]["containers"][0]["name"] for d in variant.of_kind("Deployment")
    }
    deployments = [d["metadata"]["name"] for d in variant.of_kind("Deployment")]
    hpas = ["keda-hpa-" + s["metadata"]["name"] for s in variant.of_kind("ScaledObject")]
    assert len(containers) == 5 and hpas
    for title, expr in pipeline:
        for pattern in re.findall(r'container=~"([^"]+)"', expr):
            matched = {
                c for c in containers | {"models", "istio-proxy", "topics"} if re.fullmatch(pattern, c)
            }
            assert matched == containers, f"{title}: container=~{pattern!r} matches {matched}"
        for pattern in re.findall(r'deployment=~"([^"]+)"', expr):
            assert all(re.fullmatch(pattern, d) for d in deployments), (
                f"{title}: {pattern} misses {deployments}"
            )
            # a release named facestream has Deployments facestream-<component>
            assert re.fullmatch(pattern, "facestream-detector")
        for pattern in re.findall(r'horizontalpodautoscaler=~"([^"]+)"', expr):
            assert all(re.fullmatch(pattern, h) for h in hpas), f"{title}: {pattern} misses {hpas}"
        for pattern in re.findall(r'"stage", "\$1", "\w+", "([^"]+)"', expr):
            for name in deployments + hpas:
                stage = re.fullmatch(pattern, name)
                assert stage and stage.group(1) in containers and name.endswith(stage.group(1)), (
                    title,
                    pattern,
                    name,
                )


def test_every_allowed_cluster_series_is_used(rendered: dict[str, Rendered]) -> None:
    """KUBERNETES_SERIES (the non-facestream names dashboards and rules may use) holds no spare name."""
    queries = [*dashboard_queries(), *rule_queries(rendered["02-keda"])]
    used = {name for q in queries for name in q.metrics}
    assert set(KUBERNETES_SERIES) <= used, set(KUBERNETES_SERIES) - used
