"""facestream benchmarks: per-stage cost and end-to-end throughput, written to a report.

Speed and memory targets live here, never in unit tests: these machines are shared and
noisy, so the report gives medians and ratios measured in one run, with the machine's
description, rather than pass/fail thresholds.

    .venv/bin/python load-tests/bench.py [--quick] [--out DIR]

Writes DIR/bench-<timestamp>.json and .md (default DIR: load-tests/reports).

Measured here: the detector path, the embedder, and the embedded pipeline end to end on a real
H.264 camera file (load-tests/scalelab/media.py). Every figure says its clock: wall figures from
time.perf_counter(), CPU figures from time.process_time() (user+system time of this process, all
its threads: onnxruntime's and OpenCV's included).

The gallery and the frame sampler are no longer measured here: the scale report
(load-tests/scale_report.py, parts `gallery` and `sampler`) measures them on a real Milvus server
and on real H.264 with CPU clocks, and one measurement of each is enough.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from facestream.camera.sampler import FrameEncoder
from facestream.camera.spec import CameraSpec
from facestream.gallery.store import Gallery
from facestream.imaging import decode_jpeg
from facestream.runtime.embedded import EmbeddedPipeline, identify
from facestream.settings import DetectorSettings, EmbedderSettings, GallerySettings, ModelSettings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.match import MatchStage
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scalelab.media import make_h264_video  # noqa: E402

REPO = HERE.parent
FACES = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> dict[str, float]:
    """Median and p90 wall time, and median CPU time (this process, all threads), of `fn`, in ms."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - cpu_started) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    wall.sort()
    return {
        "median_wall_ms": round(statistics.median(wall), 3),
        "p90_wall_ms": round(wall[int(0.9 * (len(wall) - 1))], 3),
        "median_cpu_ms": round(statistics.median(cpu), 3),
        "n": len(wall),
    }


def bench_detector(finder: Any, repeat: int) -> dict[str, Any]:
    out = {}
    for res in ("240p", "480p", "720p", "1080p"):
        data = (FACES / "scenes" / f"obama_{res}.jpg").read_bytes()
        image = decode_jpeg(data, max_pixels=40_000_000)
        out[res] = {
            "jpeg_decode": timed(lambda d=data: decode_jpeg(d, max_pixels=40_000_000), repeat),
            "detect_align_measure": timed(lambda im=image: finder.find(im), repeat),
            "faces": len(finder.find(image)),
        }
    return out


def bench_embedder(embedder: Any, repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 8, 32):
        crops = rng.integers(0, 255, (batch, 112, 112, 3), dtype=np.uint8)
        stats = timed(lambda c=crops: embedder.embed(c), max(3, repeat // batch))
        stats["per_face_wall_ms"] = round(stats["median_wall_ms"] / batch, 3)
        stats["per_face_cpu_ms"] = round(stats["median_cpu_ms"] / batch, 3)
        out[f"batch_{batch}"] = stats
    return out


def bench_end_to_end(finder: Any, embedder: Any, workdir: Path) -> dict[str, Any]:
    """The embedded pipeline on a 720p 10 fps H.264 file, every frame sampled: sampler, detector,
    embedder and matcher threads all in this process, so its CPU clock covers the whole pipeline."""
    gallery = Gallery(GallerySettings(gallery=str(workdir / "e2e-gallery")))
    from facestream.gallery.enroll import Enroller

    Enroller(finder, embedder, gallery, GallerySettings()).enroll("obama", [FACES / "enroll" / "obama_1.jpg"])
    media = make_h264_video(
        [FACES / "probe" / "obama.jpg", FACES / "scenes" / "two_people.jpg"],
        workdir / "e2e.mp4",
        size=(1280, 720),
        fps=10,
        seconds=10,
        gop_s=1.0,
    )
    pipeline = EmbeddedPipeline(
        DetectStage(finder, max_frame_pixels=40_000_000, thumbnail_px=128),
        EmbedStage(embedder),
        MatchStage(gallery, threshold=0.4, top_k=3),
        episode_gap_ms=30_000,
    )
    spec = CameraSpec(camera_id="e2e", url=str(media.path), fps=10)
    started, cpu_started = time.perf_counter(), time.process_time()
    candidates = list(identify(pipeline, [spec], default_fps=10, encoder=FrameEncoder(), failures=[]))
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    frames = sum(len(p.log) for p in pipeline.broker.partitions("frames"))
    faces = sum(len(p.log) for p in pipeline.broker.partitions("faces"))
    gallery.close()
    return {
        "media": media.describe(),
        "frames": frames,
        "faces": faces,
        "candidates": len(candidates),
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "frames_per_wall_s": round(frames / wall_s, 2),
        "wall_ms_per_frame": round(1000 * wall_s / frames, 2),
        "cpu_ms_per_frame": round(1000 * cpu_s / frames, 2),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# facestream benchmark, {report['at']}",
        "",
        f"Machine: {report['machine']}",
        "",
        "Wall = time.perf_counter(); CPU = time.process_time() of this process (all its threads). "
        "Gallery and sampler figures: see the scale report (load-tests/scale_report.py).",
        "",
    ]
    lines += ["## Detector (decode + detect + landmarks + align + quality), per frame, medians", ""]
    lines += [
        "| scene | JPEG decode wall ms | JPEG decode CPU ms | detect path wall ms | detect path CPU ms "
        "| faces |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for res, r in report["detector"].items():
        decode, detect = r["jpeg_decode"], r["detect_align_measure"]
        lines.append(
            f"| {res} | {decode['median_wall_ms']} | {decode['median_cpu_ms']} | "
            f"{detect['median_wall_ms']} | {detect['median_cpu_ms']} | {r['faces']} |"
        )
    lines += [
        "",
        "## Embedder, medians",
        "",
        "| batch | wall ms per batch | wall ms per face | CPU ms per face |",
        "| --- | --- | --- | --- |",
    ]
    for batch, r in report["embedder"].items():
        lines.append(
            f"| {batch.removeprefix('batch_')} | {r['median_wall_ms']} | {r['per_face_wall_ms']} | "
            f"{r['per_face_cpu_ms']} |"
        )
    e = report["end_to_end"]
    m = e["media"]
    lines += [
        "",
        f"## End to end, embedded mode ({m['width']}x{m['height']} H.264 at {m['fps']:g} fps, GOP "
        f"{m['gop_s']:g} s, {m['kbps']:,.0f} kbit/s; every frame sampled)",
        "",
        f"{e['frames']} frames, {e['faces']} faces, {e['candidates']} candidates in {e['wall_s']} s wall, "
        f"{e['cpu_s']} s CPU: {e['frames_per_wall_s']} frames per wall second, {e['wall_ms_per_frame']} ms "
        f"wall and {e['cpu_ms_per_frame']} ms CPU per frame.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", type=Path, default=REPO / "load-tests" / "reports")
    args = parser.parse_args(argv)
    if not (FACES / "scenes").is_dir():
        parser.error(f"test photos not found at {FACES}; set FACESTREAM_FACES")
    repeat = 5 if args.quick else 30
    models = ModelSettings(execution_provider="cpu")
    fetch_builtin_models(models.model_dir)
    finder = build_finder(DetectorSettings(), models)
    embedder = build_embedder(EmbedderSettings(), models)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
            f"onnxruntime {ort.__version__} {ort.get_available_providers()}, opencv {cv2.__version__}",
            "detector": bench_detector(finder, repeat),
            "embedder": bench_embedder(embedder, repeat),
            "end_to_end": bench_end_to_end(finder, embedder, work),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"bench-{stamp}.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
