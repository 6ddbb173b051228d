"""Every alert links its runbook: a section of docs/operations.md (Runbooks) that says what the alert
means, what to check and what to do; the base of the link is a value."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.fixtures.helm import CI_VALUES, REPO, Obj, Rendered, RenderResult

OPERATIONS = REPO / "docs" / "operations.md"
KEDA = next(p for p in CI_VALUES if "keda" in p.name)


def slug(heading: str) -> str:
    """The anchor GitHub (and GitLab, and most Markdown renderers) give a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def sections(markdown: str) -> dict[str, tuple[int, str]]:
    """anchor → (heading level, the section's text up to the next heading of that level or above)."""
    found = list(re.finditer(r"^(#{1,6}) (.+)$", markdown, flags=re.MULTILINE))
    out = {}
    for i, match in enumerate(found):
        level = len(match.group(1))
        end = next((m.start() for m in found[i + 1 :] if len(m.group(1)) <= level), len(markdown))
        out[slug(match.group(2))] = (level, markdown[match.end() : end])
    return out


def alerts(objects: list[Obj]) -> list[dict[str, object]]:
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_slug_is_githubs() -> None:
    assert slug("FacestreamStageNoReplicas") == "facestreamstagenoreplicas"
    assert slug("Upgrades and rollback") == "upgrades-and-rollback"
    assert slug("`helm test`") == "helm-test"


def test_every_alert_links_a_runbook_section_that_exists(rendered: dict[str, Rendered]) -> None:
    docs = sections(OPERATIONS.read_text())
    assert "runbooks" in docs, "docs/operations.md has no Runbooks section"
    runbooks_level, runbooks_text = docs["runbooks"]
    rules = alerts(rendered["02-keda"].objects)
    assert len(rules) >= 19
    for rule in rules:
        name = str(rule["alert"])
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        base, _, anchor = url.partition("#")
        assert base == "docs/operations.md", f"{name}: {url}"
        assert anchor == name.lower(), f"{name}: {url}"
        assert anchor in docs, f"{name}: no heading #{anchor} in docs/operations.md"
        level, text = docs[anchor]
        assert level == runbooks_level + 1 and f"### {name}\n" in runbooks_text, (
            f"{name}: its runbook is not a subsection of Runbooks"
        )
        assert "**Means:**" in text, f"{name}: the runbook does not say what the alert means"
        assert re.search(r"\*\*(Check|Check/Do):\*\*", text), f"{name}: the runbook says nothing to check"
        assert re.search(r"\*\*(Do|Check/Do):\*\*", text), f"{name}: the runbook says nothing to do"


def test_every_runbook_is_an_alert(rendered: dict[str, Rendered]) -> None:
    """No stale runbook for an alert that was renamed or removed."""
    _, runbooks_text = sections(OPERATIONS.read_text())["runbooks"]
    documented = set(re.findall(r"^### (Facestream\w+)$", runbooks_text, flags=re.MULTILINE))
    assert documented == {str(r["alert"]) for r in alerts(rendered["02-keda"].objects)}


def test_runbook_base_url_is_a_value(render: Callable[..., RenderResult]) -> None:
    base = "https://git.example.org/facestream/-/blob/v0.1.0/docs/operations.md"
    result = render(KEDA, [f"monitoring.prometheusRule.runbookBaseUrl={base}"])
    assert result.returncode == 0, result.stderr
    urls = {str(r["annotations"]["runbook_url"]) for r in alerts(result.objects)}  # type: ignore[index]
    assert f"{base}#facestreamstagenoreplicas" in urls
    assert all(u.startswith(base + "#") for u in urls), urls
    refused = render(KEDA, ["monitoring.prometheusRule.runbookBaseUrl=ops.md#runbooks"])
    assert refused.returncode != 0 and "runbookBaseUrl" in refused.stderr, refused.stderr


def test_replica_alerts_name_this_releases_deployments(rendered: dict[str, Rendered]) -> None:
    """The kube-state-metrics selectors match the Deployments the chart renders, and only those."""
    variant = rendered["02-keda"]
    by_name = {str(r["alert"]): str(r["expr"]) for r in alerts(variant.objects)}
    pattern = re.search(r'deployment=~"([^"]+)"', by_name["FacestreamStageNoReplicas"])
    assert pattern
    regex = re.compile(pattern.group(1).replace("\\\\", "\\"))
    names = [d["metadata"]["name"] for d in variant.of_kind("Deployment")]
    assert len(names) == 5 and all(regex.fullmatch(n) for n in names), (pattern.group(1), names)
    assert not regex.fullmatch("other-facestream-detector")
    assert not regex.fullmatch(f"{names[0]}-canary")
    hpa = re.search(r'horizontalpodautoscaler=~"([^"]+)"', by_name["FacestreamScalerAtMaxLagGrowing"])
    assert hpa
    hpa_regex = re.compile(hpa.group(1))
    for scaled in variant.of_kind("ScaledObject"):
        # KEDA names the HPA it creates keda-hpa-<ScaledObject name>; the frame-sampler scales on CPU
        # and never commits its input, so its lag cannot say it falls behind.
        on_lag = scaled["spec"]["triggers"][0]["type"] == "kafka"
        matched = hpa_regex.fullmatch("keda-hpa-" + scaled["metadata"]["name"]) is not None
        assert matched == on_lag, scaled["metadata"]["name"]
