"""The scale report's harness works and its report is well formed (CI runs the smoke size).

Not a benchmark: no figure is compared with a target here (targets live in the report and in
docs/benchmarks.md). What is checked is what would make a full run useless: a part that fails,
a figure missing or impossible (a recall above 1, no faces through a pipeline that was fed
faces, CPU time that is zero), a plot that is not a PNG, a Markdown report that omits a part.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTS = ("sampler", "pipeline", "gallery", "reviewer", "capacity")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("scale-report")
    done = subprocess.run(
        [sys.executable, str(REPO / "load-tests" / "scale_report.py"), "--size", "smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "FACESTREAM_FACES": str(faces_dir)},
        check=False,
    )
    assert done.returncode == 0, f"scale_report.py --size smoke failed:\n{done.stderr[-4000:]}"
    (found,) = list(out.glob("scale-*"))
    return found


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict[str, Any]:
    return dict(json.loads((report_dir / "report.json").read_text()))


def finite_numbers(value: Any) -> list[float]:
    """Every number in a JSON value (the report is strict JSON: NaN would not have parsed)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in finite_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in finite_numbers(v)]
    return []


def test_every_part_ran_and_reported(report: dict[str, Any]) -> None:
    assert report["size"] == "smoke"
    assert list(report["parts"]) == list(PARTS)
    for name, part in report["parts"].items():
        assert "error" not in part, f"{name}: {part.get('error')}"
        assert part["part_wall_s"] > 0
    assert all(math.isfinite(n) for n in finite_numbers(report))


def test_the_pipeline_moved_faces_through_the_broker_and_measured_cpu(report: dict[str, Any]) -> None:
    pipeline = report["parts"]["pipeline"]
    sat = pipeline["saturation"]
    assert sat["frames"] > 0 and sat["faces"] > 0 and sat["hits"] > 0
    assert all(cpu > 0 for cpu in sat["services_cpu_s"].values())
    assert pipeline["bare_models"]["clock"] == "process_time"
    assert 0 < pipeline["bare_models"]["cpu_s_per_face"] < sat["cpu_s_per_face"] * 10
    assert pipeline["latency"]["machine_cpu_load"] > 0


def test_the_gallery_searched_both_backends_with_a_recall(report: dict[str, Any]) -> None:
    gallery = report["parts"]["gallery"]
    backends = {run["backend"] for run in gallery["runs"]}
    assert {"lite-flat", "server-hnsw"} <= backends
    for run in gallery["runs"]:
        assert run["insert"]["rows_per_s"] > 0
        assert 0.0 <= run["search"]["recall_genuine"] <= 1.0
    # exact search finds the vector a genuine query was made from (what recall is measured against)
    assert all(run["genuine_exact_is_mate"] == 1.0 for run in gallery["runs"])


def test_sampler_and_reviewer_figures_are_possible(report: dict[str, Any]) -> None:
    sampler = report["parts"]["sampler"]
    assert sampler["rows"] and all(row["cpu_s_per_camera_s"] > 0 for row in sampler["rows"])
    reviewer = report["parts"]["reviewer"]
    assert reviewer["impostor_pairs"] > 0
    assert 0.0 <= reviewer["fmr_point"] <= reviewer["fmr_upper_95"] <= 1.0


def test_capacity_grows_with_cameras(report: dict[str, Any]) -> None:
    rows = report["parts"]["capacity"]["rows"]
    assert [r["cameras"] for r in rows] == [1_000, 10_000, 100_000]
    for smaller, larger in itertools.pairwise(rows):
        assert larger["pipeline_cores_requested"] > smaller["pipeline_cores_requested"]
        assert larger["kafka_produced_mb_s"] > smaller["kafka_produced_mb_s"]


def test_markdown_names_every_part_and_its_plots_are_pngs(report_dir: Path) -> None:
    text = (report_dir / "report.md").read_text()
    for heading in ("## Frame sampler", "## Pipeline", "## Gallery", "## Reviewers", "## Capacity model"):
        assert heading in text, f"report.md has no section mentioning {heading!r}"
    plots = sorted(report_dir.glob("*.png"))
    assert len(plots) >= 4
    for png in plots:
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{png.name} is not a PNG"
        assert f"]({png.name})" in text, f"{png.name} is not linked from report.md"
    assert "CPU clock" in text and "wall" in text
