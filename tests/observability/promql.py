"""Metric names and grouping labels in the PromQL of the chart's dashboards and alert rules."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from facestream.runtime import metrics
from tests.fixtures.helm import CHART, Rendered

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "atan2",
}  # fmt: skip
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint", "le"}
"""Labels Prometheus adds when it scrapes (or that histograms carry): not the application's."""
KUBERNETES_SERIES = frozenset({
    # kube-state-metrics: the Deployments' and HorizontalPodAutoscalers' (KEDA's too) replicas.
    "kube_deployment_status_replicas_available",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_pod_container_resource_limits",
    # The kubelet's cAdvisor: containers' CPU, CPU throttling and memory.
    "container_cpu_usage_seconds_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_periods_total",
    "container_memory_working_set_bytes",
    # NVIDIA's DCGM exporter: GPU utilisation of the GPU embedder.
    "DCGM_FI_DEV_GPU_UTIL",
})  # fmt: skip
"""Series of the cluster's own exporters (kube-prometheus-stack runs kube-state-metrics and scrapes
cAdvisor; the DCGM exporter comes with NVIDIA's GPU operator), named one by one: the saturation
panels and the replica alerts read them. Not a pattern: any other name must still be facestream's."""
PROMETHEUS_SERIES = {"up"} | KUBERNETES_SERIES
"""Series not exported by any service: Prometheus' own `up`, and KUBERNETES_SERIES."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Query:
    where: str
    expr: str

    @property
    def metrics(self) -> set[str]:
        text = _STRING.sub('""', self.expr)
        text = _MATCHERS.sub("", text)
        text = _RANGE.sub("", text)
        text = _GROUPING.sub(" ", text)
        names = set()
        for match in _IDENT.finditer(text):
            name = match.group(0)
            rest = text[match.end() :].lstrip()
            if rest.startswith("(") or name.lower() in KEYWORDS or name[0].isdigit():
                continue  # a function call, an operator keyword
            if re.fullmatch(r"\d+(ms|s|m|h|d|w|y)", name):
                continue
            names.add(name)
        return names

    @property
    def grouping_labels(self) -> set[str]:
        labels = set()
        for match in _GROUPING.finditer(_STRING.sub('""', self.expr)):
            if match.group(1) in ("by", "on"):
                labels |= {lbl.strip() for lbl in match.group(2).split(",") if lbl.strip()}
        return labels


def dashboard_queries() -> Iterator[Query]:
    for path in sorted((CHART / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield Query(f"{path.name}: {panel['title']}", target["expr"])
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = re.match(r"label_values\((\w+)(?:\{[^{}]*\})?,", var["definition"])
                assert inner, var["definition"]
                yield Query(f"{path.name}: ${var['name']}", inner.group(1))


def rule_queries(rendered: Rendered) -> Iterator[Query]:
    for rule in rendered.of_kind("PrometheusRule"):
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                yield Query(f"rule {r.get('alert') or r.get('record')}", r["expr"])


def defined_metrics() -> dict[str, MetricWrapperBase]:
    """metrics.py's objects by the sample names they export (a counter `x_total`, a histogram's
    `_bucket`/`_count`/`_sum`)."""
    out: dict[str, MetricWrapperBase] = {}
    found: list[object] = list(vars(metrics).values())
    for value in vars(metrics).values():  # the stages' groups (DETECTOR, MATCHER)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.extend(getattr(value, f.name) for f in dataclasses.fields(value))
    for value in found:
        if not isinstance(value, MetricWrapperBase):
            continue
        name = value._name  # prometheus_client keeps a counter's name without `_total`
        kind = value._type
        if kind == "counter":
            out[name + "_total"] = value
        elif kind == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                out[name + suffix] = value
        else:
            out[name] = value
    return out


def family_of(sample_name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) + "_bucket" in defined_metrics():
            return sample_name.removesuffix(suffix)
    return sample_name


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
