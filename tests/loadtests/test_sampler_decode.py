"""The sampler's decode benchmark (load-tests/sampler_decode.py) works, and measures what it says.

Not a benchmark: no figure is compared with a target. It runs at its smallest size (4 s of 720p
H.264 with a 2 s GOP, one run, 3 s of each live row) and checks the report's counts, which do not depend
on the machine: the sampler's real code decodes exactly the frames that PyAV alone must decode
for those samples (its floor), and OpenCV decodes them all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "load-tests" / "sampler_decode.py"


@pytest.mark.subprocess
def test_the_sampler_decodes_each_gop_only_up_to_its_last_sample_as_pyav_alone_does(faces_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--seconds", "4", "--gop", "2", "--repeat", "1",
         "--live-seconds", "3", "--live-repeat", "1", "--faces", str(faces_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"sampler_decode.py failed:\n{done.stderr[-4000:]}"
    report: dict[str, Any]
    report, _ = json.JSONDecoder().raw_decode(done.stdout)

    assert report["media"]["gop_s"] == 2.0 and report["media"]["seconds"] == 4.0
    # 1 fps over 4 s: a sample at 0, 1, 2 and 3 s, whichever decoder
    assert report["opencv"]["frames_published"] == report["pyav"]["frames_published"] == 4
    assert report["opencv"]["frames_decoded"] == "all"
    # each 2 s GOP: its key frame and the 25 frames up to the 1 s sample; the rest never decoded
    assert report["pyav_floor"]["frames_decoded"] == 2 * 26
    assert report["pyav"]["frames_decoded"] == report["pyav_floor"]["frames_decoded"]
    # live: both transports, each row with figures; PyAV decodes only what it samples there too
    assert set(report["live"]) == {"tcp_mpegts", "rtsp"}
    for rows in report["live"].values():
        assert set(rows) == {"opencv", "pyav_every_packet", "pyav", "demux_only_cpu_s_per_camera_s"}
        assert rows["opencv"]["frames_decoded"] == "all"
        for row in ("pyav_every_packet", "pyav"):
            # 3 s of a 2 s GOP: at most two GOPs' key frame and frames up to their 1 s sample, of 75
            assert 1 <= rows[row]["frames_decoded"] <= 2 * 26 and rows[row]["cpu_s_per_camera_s"] > 0
    for figure in (
        report["pyav"]["cpu_s_per_camera_s"],
        report["pyav_floor"]["cpu_s_per_camera_s"],
        report["every_frame_cpu_ms_per_frame"]["pyav"],
        report["every_frame_cpu_ms_per_frame"]["ffmpeg_cli"],
    ):
        assert figure > 0
