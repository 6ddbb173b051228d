"""The non-reference benchmark (load-tests/sampler_nonref.py) works, and measures what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "load-tests" / "sampler_nonref.py"


@pytest.mark.subprocess
def test_dropping_leaves_only_non_reference_frames_undecoded_and_changes_no_sample(faces_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--gop", "2", "--repeat", "1",
         "--b-frames", "0", "2", "--faces", str(faces_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"sampler_nonref.py failed:\n{done.stderr[-4000:]}"
    report: dict[str, Any]
    report, _ = json.JSONDecoder().raw_decode(done.stdout)
    control, with_b = report["files"]
    assert (control["media"]["b_frames"], with_b["media"]["b_frames"]) == (0, 2)
    for f in (control, with_b):
        assert f["same_samples"] is True
        assert f["dropping"]["published"] == f["keeping"]["published"] == 4  # 1 fps over 4 s
        assert f["keeping"]["dropped"] == 0
        # the same packets read up to each sample: decoded or dropped
        assert f["dropping"]["decoded"] + f["dropping"]["dropped"] == f["keeping"]["decoded"]
        assert f["dropping"]["cpu_s_per_camera_s"] > 0 and f["keeping"]["cpu_s_per_camera_s"] > 0
    assert control["dropping"]["dropped"] == 0  # I- and P-frames only: nothing to drop
    # 2 B-frames between references: about 2 in 3 of the frames up to each 1 s sample
    assert 0.5 <= with_b["dropping"]["dropped"] / with_b["keeping"]["decoded"] <= 0.75
