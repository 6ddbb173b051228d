"""What leaving non-reference frames undecoded saves the sampler (camera/h264_refs.py, issue 10).

Why: with a GOP longer than the sampling interval the sampler decodes each GOP from its key frame up
to its last sample. Frames no other frame refers to need not be decoded unless they are samples.
This runs the sampler's real code (a CameraWorker over the PyAV file source, with the FrameEncoder,
publishing into a list) over one 720p 25 fps H.264 file per B-frame setting (libx264 veryfast, no
pyramid, so every B-frame is non-reference; 0 B-frames is the control, as most IP cameras send: it
has nothing to drop), each twice per round: `dropping` as shipped, and `keeping` with the test
replaced by none (the sampler before the change). Rounds alternate the two so both see the same
machine load; CPU from time.process_time() (all threads), medians over --repeat rounds; one
camera-second = one second of media.

    .venv/bin/python load-tests/sampler_nonref.py [--seconds 30] [--gop 2] [--fps 1] [--b-frames 0 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_decode import PHOTOS, REPO, sample_file
from scalelab.media import make_h264_video

import facestream.camera.pyav as pyav_source

MODES = ("dropping", "keeping")


@contextmanager
def mode(name: str) -> Iterator[None]:
    """`keeping`: the sampler with no frame judged droppable, as before non-reference frames were
    left undecoded."""
    shipped = pyav_source.droppable_for
    if name == "keeping":
        pyav_source.droppable_for = lambda _codec, _extradata: None  # type: ignore[assignment]
    try:
        yield
    finally:
        pyav_source.droppable_for = shipped  # type: ignore[assignment]


def one_run(path: Path, seconds: float, fps: float) -> dict[str, Any]:
    used, frames, stats = sample_file(path, fps, "pyav")
    assert stats is not None
    return {
        "cpu_s_per_camera_s": used / seconds,
        "published": len(frames),
        "decoded": stats.decoded,
        "dropped": stats.dropped,
        "images": [f.jpeg for f in frames],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=30.0, help="media seconds of each file")
    p.add_argument("--gop", type=float, default=2.0, help="GOP in seconds")
    p.add_argument("--fps", type=float, default=1.0, help="sampled frames per second")
    p.add_argument("--b-frames", type=int, nargs="+", default=[0, 2], help="one file per value")
    p.add_argument("--repeat", type=int, default=5, help="alternated rounds (median)")
    p.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    args = p.parse_args()
    report: dict[str, Any] = {"clock": "time.process_time (CPU, all threads)", "sampled_fps": args.fps}
    report["files"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for b_frames in args.b_frames:
            media = make_h264_video(
                [args.faces / ph for ph in PHOTOS],
                Path(tmp) / f"cam720-b{b_frames}.mp4",
                seconds=args.seconds,
                gop_s=args.gop,
                b_frames=b_frames,
            )
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            for _ in range(args.repeat):
                for name in MODES:
                    with mode(name):
                        runs[name].append(one_run(media.path, media.seconds, args.fps))
            rows = {}
            for name, done in runs.items():
                per_s = statistics.median(r["cpu_s_per_camera_s"] for r in done)
                rows[name] = {
                    "cpu_s_per_camera_s": round(per_s, 4),
                    "runs": [round(r["cpu_s_per_camera_s"], 4) for r in done],
                    "cameras_per_core": round(1 / per_s, 1),
                    "published": done[-1]["published"],
                    "decoded": done[-1]["decoded"],
                    "dropped": done[-1]["dropped"],
                }
            report["files"].append(
                {
                    "media": media.describe(),
                    **rows,
                    # the same JPEG bytes both ways: dropping changed no sampled picture
                    "same_samples": runs["dropping"][-1]["images"] == runs["keeping"][-1]["images"],
                    "keeping_over_dropping": round(
                        rows["keeping"]["cpu_s_per_camera_s"] / rows["dropping"]["cpu_s_per_camera_s"], 2
                    ),
                }
            )
    print(json.dumps(report, indent=2))
    for f in report["files"]:
        keep, drop = f["keeping"], f["dropping"]
        print(
            f"B-frames {f['media']['b_frames']}, GOP {f['media']['gop_s']} s: CPU s per camera-second "
            f"keeping {keep['cpu_s_per_camera_s']:.4f} -> dropping {drop['cpu_s_per_camera_s']:.4f} "
            f"({keep['cameras_per_core']} -> {drop['cameras_per_core']} cameras a core), "
            f"decoded {keep['decoded']} -> {drop['decoded']}, same samples: {f['same_samples']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
