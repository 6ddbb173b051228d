"""Embeddings per clip and CPU per frame with and without face tracking (issue 10, part 2).

Runs `facestream identify` in this process over the same sources twice, tracking off
(`--no-track-faces`: every face of every sampled frame is embedded) and on (the default), and
compares what reached the embedder (faces that passed the gates, less those the tracker dropped),
the candidates (identity and source: they must be the same) and the CPU seconds of the whole
run from time.process_time() (every thread of this process: decode, detection, tracking,
embedding, gallery search), divided by the frames sampled. Sources: the bundled sample (video
and stills) and a 30 s 720p H.264 clip of ../shared/data/faces photos (each an equal share,
zooming and panning), sampled at 2 fps.

    .venv/bin/python load-tests/tracking.py [--seconds 30] [--fps 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus_client import REGISTRY
from scalelab.media import make_h264_video

from facestream.cli import main as facestream
from facestream.commands.demo import load_manifest, sample_dir

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"
CLIP_PHOTOS = ("probe/obama.jpg", "probe/kit_harington_unenrolled.jpg", "probe/alex_lacamoire.jpg")


def run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = facestream(list(argv))
    if status != 0:
        raise SystemExit(f"facestream {' '.join(argv[:2])}: exit {status}")
    return out.getvalue()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def identify(gallery: str, sources: list[str], fps: float, track: bool) -> dict[str, Any]:
    before = {
        "detected": counter("facestream_faces_detected_total"),
        "rejected": sum(counter("facestream_faces_rejected_total", reason=r) for r in REJECTIONS),
        "dropped": counter("facestream_faces_tracked_total", decision="same"),
    }
    cpu0, wall0 = time.process_time(), time.perf_counter()
    flags = ["--fps", str(fps), "--track-faces" if track else "--no-track-faces"]
    printed = run("identify", "--gallery", gallery, *flags, *sources)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    after = {
        "detected": counter("facestream_faces_detected_total"),
        "rejected": sum(counter("facestream_faces_rejected_total", reason=r) for r in REJECTIONS),
        "dropped": counter("facestream_faces_tracked_total", decision="same"),
    }
    delta = {k: after[k] - before[k] for k in before}
    candidates = sorted((c["camera_id"], c["identity"]) for c in map(json.loads, printed.splitlines()))
    return {
        "tracking": track,
        "faces_passed_gates": delta["detected"] - delta["rejected"],
        "embeddings": delta["detected"] - delta["rejected"] - delta["dropped"],
        "candidates": candidates,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
    }


REJECTIONS = ("low_score", "too_small", "blurred", "pose")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=2.0)
    args = parser.parse_args()
    root = sample_dir()
    manifest = load_manifest(root)
    with tempfile.TemporaryDirectory() as tmp:
        gallery = str(Path(tmp) / "gallery")
        until = "2099-01-01T00:00:00Z"
        granted = run(
            "authorisation", "grant", "--gallery", gallery, "--case", "BENCH-1", "--basis", "benchmark",
            "--purpose", "missing", "--issued-by", "load-tests", "--valid-until", until,
        )  # fmt: skip
        auth = json.loads(granted)["id"]
        for identity, photos in manifest.enroll.items():
            run("gallery", "enroll", "--gallery", gallery, "--authorisation", auth, "--identity", identity,
                *(str(root / p) for p in photos))  # fmt: skip
        clip = make_h264_video(
            [FACES / p for p in CLIP_PHOTOS], Path(tmp) / "clip.mp4", seconds=args.seconds, gop_s=1.0
        ).path
        sets = {
            "bundled sample video": [str(root / manifest.video.file)],
            "bundled sample stills (each its own camera: nothing to track)": [
                str(root / still.file) for still in manifest.stills
            ],
            f"{args.seconds:g} s 720p H.264 clip": [str(clip)],
        }
        rows = []
        for name, sources in sets.items():
            off = identify(gallery, sources, args.fps, track=False)
            on = identify(gallery, sources, args.fps, track=True)
            rows.append({"sources": name, "off": off, "on": on})
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": "2-core shared CPU machine; CPU = time.process_time() of the whole identify run",
        "fps": args.fps,
        "rows": rows,
    }
    out = REPO / "load-tests" / "reports" / f"tracking-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for row in rows:
        off, on = row["off"], row["on"]
        same = "same" if off["candidates"] == on["candidates"] else "DIFFERENT"
        ratio = on["embeddings"] / max(1, off["embeddings"])
        print(
            f"{row['sources']}: embeddings {off['embeddings']:.0f} -> {on['embeddings']:.0f} ({ratio:.2f}x); "
            f"CPU {off['cpu_s']:.2f} -> {on['cpu_s']:.2f} s; candidates {same}: {on['candidates']}"
        )
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
