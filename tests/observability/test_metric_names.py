"""The metric catalogue (runtime/metrics.py) follows one convention, and the dashboards and rules
name only metrics it defines; every metric it defines is on a dashboard."""

from __future__ import annotations

import re

from tests.fixtures.helm import Rendered
from tests.observability.promql import (
    PROMETHEUS_SERIES,
    Query,
    dashboard_queries,
    defined_metrics,
    family_of,
    rule_queries,
)


def test_names_follow_one_convention() -> None:
    for sample, metric in defined_metrics().items():
        assert sample.startswith("facestream_"), sample
        assert re.fullmatch(r"[a-z][a-z0-9_]*", sample), sample
        name = metric._name
        assert not re.search(r"_(ms|milliseconds|kb|mb|minutes|hours)(_|$)", name), f"{name}: use base units"
        if metric._type == "counter":
            assert sample.endswith("_total"), sample
        else:
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
        words = set(name.split("_"))
        if metric._type == "histogram" or words & {"latency", "duration", "age", "timestamp"}:
            assert name.endswith(("_seconds", "_bytes", "_size")), f"{name}: say the unit"


def test_the_extractor_finds_names() -> None:
    q = Query("x", 'sum by (stage) (rate(facestream_a_total{x="by(y)"}[5m])) / on (stage) group_left b_c > 3')
    assert q.metrics == {"facestream_a_total", "b_c"}
    assert q.grouping_labels == {"stage"}


def test_dashboards_and_rules_name_only_defined_metrics(rendered: dict[str, Rendered]) -> None:
    defined = set(defined_metrics())
    queries = [*dashboard_queries(), *rule_queries(rendered["02-keda"])]
    assert len(queries) > 50
    for query in queries:
        unknown = query.metrics - defined - PROMETHEUS_SERIES
        assert not unknown, f"{query.where}: {unknown} are not in runtime/metrics.py"


def test_every_defined_metric_is_on_a_dashboard() -> None:
    used = {family_of(name) for q in dashboard_queries() for name in q.metrics}
    for sample in defined_metrics():
        assert family_of(sample) in used, f"{sample} is exported but on no dashboard"
