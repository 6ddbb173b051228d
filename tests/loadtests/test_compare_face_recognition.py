"""The face_recognition comparison's harness (load-tests/compare_face_recognition.py) works.

Not a benchmark, and no figure is compared with a target. The facestream half runs for real at
the smallest size (a 2 s clip and the bundled sample, `--facestream-only`), with the report it
writes; the face_recognition half needs the separate venv of scripts/face-recognition-venv.sh,
so only its identification rule is checked here (numpy), and the benchmark itself runs the rest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
LOAD_TESTS = REPO / "load-tests"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LOAD_TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report_files(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("compare")
    done = subprocess.run(
        [sys.executable, str(LOAD_TESTS / "compare_face_recognition.py"), "--seconds", "2",
         "--facestream-only", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "FACESTREAM_FACES": str(faces_dir)},
    )  # fmt: skip
    assert done.returncode == 0, f"compare_face_recognition.py failed:\n{done.stderr[-4000:]}"
    (found,) = list(out.glob("compare-face-recognition-*.json"))
    return json.loads(found.read_text()), found.with_suffix(".md").read_text()


@pytest.mark.subprocess
def test_facestream_side_measures_cpu_and_finds_the_enrolled_people(
    report_files: tuple[dict[str, Any], str],
) -> None:
    report, _ = report_files
    assert set(report["clips"]) == {"bundled-sample", "clip-2s-720p"}
    for name, clip in report["clips"].items():
        results = clip["results"]
        assert set(results) == {"facestream_tracking", "facestream_no_tracking"}, name
        for side, r in results.items():
            assert r["frames"] > 0 and r["embeddings"] > 0, (name, side)
            assert r["cpu_ms_per_frame"] > 0 and r["median_process_cpu_ms"] > 0, (name, side)
            assert sum(r["stages_ms_per_frame"].values()) > 0, (name, side)
            assert r["identities_found"] == r["enrolled_people_shown"], (name, side)
            assert {"obama", "alex_lacamoire"} <= set(r["identities_found"]), (name, side)
            assert "kit_harington" not in r["identities_found"]
            assert r["false_identifications"] == [] and r["missed"] == [], (name, side)
        assert results["facestream_tracking"]["embeddings"] <= results["facestream_no_tracking"]["embeddings"]
        assert clip["ratios"] == {"a_over_b": None, "a_over_c": None}
    assert report["face_recognition_versions"] is None
    assert report["overall"]["results"]["facestream_tracking"]["frames"] > 0


@pytest.mark.subprocess
def test_markdown_report_names_every_side_run_and_what_was_not(
    report_files: tuple[dict[str, Any], str],
) -> None:
    report, md = report_files
    assert "(b) facestream, tracking on" in md and "(c) facestream, tracking off" in md
    assert "(a) face_recognition" not in md
    assert "not measured" in md and report["verdict"].startswith("Not measured")
    assert "Intel" in md or "AMD" in md or "cores" in md  # the machine is named


def test_face_recognition_identifies_nearest_within_tolerance_only() -> None:
    worker = load("face_recognition_worker")
    known = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    names = ["a", "b", "b"]
    faces = [np.array([0.9, 0.1]), np.array([5.0, 5.0]), np.array([0.1, 0.0])]
    found = worker.identify(faces, known, names, 0.6)
    assert [f and f[0] for f in found] == ["b", None, "a"]
    assert found[0][1] == pytest.approx(np.hypot(0.1, 0.1), abs=1e-4)


def test_a_name_not_shown_in_its_frame_is_a_false_identification() -> None:
    compare = load("compare_face_recognition")
    clip = compare.Clip("c", "c.mp4", [], [], [{"obama"}, {"kit_harington"}, set()])
    rows = [
        {"cpu_ms": 10.0, "stages_ms": {"x": 10.0}, "faces": 1, "identities": [["obama", 0.4]]},
        {"cpu_ms": 12.0, "stages_ms": {"x": 12.0}, "faces": 1, "identities": [["biden", 0.5]]},
        {"cpu_ms": 2.0, "stages_ms": {"x": 2.0}, "faces": 0, "identities": []},
    ]
    s = compare.summarise({"frames": rows, "wall_s": 0.1}, clip, {"obama", "biden", "alex_lacamoire"})
    assert s["false_identifications"] == [{"frame": 1, "identity": "biden", "shown": ["kit_harington"]}]
    assert s["identities_found"] == ["biden", "obama"] and s["missed"] == []
    assert s["embeddings"] == 2 and s["cpu_ms_per_frame"] == pytest.approx(8.0)
