"""promtool checks the chart's alert rules and runs a unit test that fires each one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.fixtures.helm import K8sTools, Rendered

TESTS = Path(__file__).with_name("alerts_test.yaml")


def write_rules(rendered: dict[str, Rendered], tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    (rule,) = rendered["02-keda"].of_kind("PrometheusRule")
    groups = rule["spec"]["groups"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path, groups


def promtool(tools: K8sTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules(k8s_tools: K8sTools, rendered: dict[str, Rendered], tmp_path: Path) -> None:
    rules, groups = write_rules(rendered, tmp_path)
    done = promtool(k8s_tools, "check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in groups)  # type: ignore[arg-type]
    assert f"SUCCESS: {count} rules found" in done.stdout


def test_promtool_unit_tests_fire_every_alert(
    k8s_tools: K8sTools, rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    rules, groups = write_rules(rendered, tmp_path)
    spec = yaml.safe_load(TESTS.read_text())
    spec["rule_files"] = [str(rules)]
    tests = tmp_path / "alerts_test.yaml"
    tests.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = promtool(k8s_tools, "test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr

    alerts = {r["alert"] for g in groups for r in g["rules"]}  # type: ignore[attr-defined, index]
    fired = {
        case["alertname"]
        for test in spec["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {alerts - fired}"


def test_promtool_test_catches_a_wrong_expectation(
    k8s_tools: K8sTools, rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """The unit tests are not vacuous: expecting the wrong stage fails."""
    rules, _ = write_rules(rendered, tmp_path)
    spec = yaml.safe_load(TESTS.read_text())
    spec["rule_files"] = [str(rules)]
    spec["tests"][0]["alert_rule_test"][1]["exp_alerts"][0]["exp_labels"]["stage"] = "embedder"
    tests = tmp_path / "broken_test.yaml"
    tests.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = promtool(k8s_tools, "test", "rules", str(tests))
    assert done.returncode != 0
