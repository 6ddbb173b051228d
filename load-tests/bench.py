"""facestream benchmarks: per-stage cost and end-to-end throughput, written to a report.

Speed and memory targets live here, never in unit tests: these machines are shared and
noisy, so the report gives medians and ratios measured in one run, with the machine's
description, rather than pass/fail thresholds.

    .venv/bin/python load-tests/bench.py [--quick] [--gallery-sizes 1000,10000,100000] [--out DIR]

Writes DIR/bench-<timestamp>.json and .md (default DIR: load-tests/reports).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
from facestream.camera.sources import VideoFile
from facestream.camera.spec import CameraSpec
from facestream.gallery.store import FOREVER_MS, Gallery, GalleryEntry
from facestream.imaging import decode_jpeg
from facestream.runtime.embedded import EmbeddedPipeline, identify
from facestream.sample import make_camera_video
from facestream.settings import DetectorSettings, EmbedderSettings, GallerySettings, ModelSettings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.match import MatchStage
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> dict[str, float]:
    """Median and p90 wall time of `fn` in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 3),
        "n": len(samples),
    }


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        stats["per_face_ms"] = round(stats["median_ms"] / batch, 3)
        out[f"batch_{batch}"] = stats
    return out


def bench_gallery(sizes: list[int], repeat: int, workdir: Path) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    out = {}
    for size in sizes:
        gallery = Gallery(GallerySettings(gallery=str(workdir / f"gallery-{size}")))
        started = time.perf_counter()
        for start in range(0, size, 2000):
            n = min(2000, size - start)
            vectors = rng.standard_normal((n, 512)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            entries = [
                GalleryEntry(f"e{start + i}", f"person{start + i}", "auth", "m", "p", 0, FOREVER_MS)
                for i in range(n)
            ]
            gallery.add(entries, vectors)
        insert_s = time.perf_counter() - started
        probe = rng.standard_normal((32, 512)).astype(np.float32)
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)

        def search(q: np.ndarray, g: Gallery = gallery) -> Any:
            return g.search(q, model_id="m", threshold=0.4, top_k=3)

        one, many = probe[:1], probe
        out[str(size)] = {
            "insert_rows_per_s": round(size / insert_s),
            "search_1": timed(lambda q=one: search(q), repeat),
            "search_32": timed(lambda q=many: search(q), max(3, repeat // 4)),
            "rss_mb_after": round(rss_mb()),
        }
        gallery.close()
    return out


def bench_sampler(workdir: Path) -> dict[str, Any]:
    """Decode cost of sampling a 25 fps 720p file at 2 fps: the sampler's real cost per camera."""
    video = make_camera_video(
        [FACES / "probe" / "obama.jpg"] * 2, workdir / "cam720.mp4", size=(1280, 720), fps=25, seconds_each=4
    )
    out = {}
    for fps in (2.0, 25.0):
        source = VideoFile(CameraSpec(camera_id="c", url=str(video)), fps)
        source.open()
        encoder = FrameEncoder()
        started, frames = time.perf_counter(), 0
        while (captured := source.read()) is not None:
            encoder.frame(source.spec, captured)
            frames += 1
        elapsed = time.perf_counter() - started
        source.close()
        out[f"sample_at_{fps:g}fps"] = {
            "frames_published": frames,
            "video_seconds": 8,
            "cpu_seconds_per_video_second": round(elapsed / 8, 4),
        }
    return out


def bench_end_to_end(finder: Any, embedder: Any, workdir: Path) -> dict[str, Any]:
    gallery = Gallery(GallerySettings(gallery=str(workdir / "e2e-gallery")))
    from facestream.gallery.enroll import Enroller

    Enroller(finder, embedder, gallery, GallerySettings()).enroll("obama", [FACES / "enroll" / "obama_1.jpg"])
    video = make_camera_video(
        [FACES / "probe" / "obama.jpg", FACES / "scenes" / "two_people.jpg"],
        workdir / "e2e.mp4",
        size=(1280, 720),
        fps=10,
        seconds_each=5,
    )
    pipeline = EmbeddedPipeline(
        DetectStage(finder, max_frame_pixels=40_000_000, thumbnail_px=128),
        EmbedStage(embedder),
        MatchStage(gallery, threshold=0.4, top_k=3),
        episode_gap_ms=30_000,
    )
    spec = CameraSpec(camera_id="e2e", url=str(video), fps=10)
    started = time.perf_counter()
    candidates = list(identify(pipeline, [spec], default_fps=10, encoder=FrameEncoder(), failures=[]))
    elapsed = time.perf_counter() - started
    frames = sum(len(p.log) for p in pipeline.broker.partitions("frames"))
    faces = sum(len(p.log) for p in pipeline.broker.partitions("faces"))
    gallery.close()
    return {
        "frames": frames,
        "faces": faces,
        "candidates": len(candidates),
        "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed, 2),
        "ms_per_frame": round(1000 * elapsed / frames, 2),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# facestream benchmark, {report['at']}", "", f"Machine: {report['machine']}", ""]
    lines += ["## Detector (decode + detect + landmarks + align + quality), per frame", ""]
    lines += ["| scene | JPEG decode ms | detect path ms | faces |", "| --- | --- | --- | --- |"]
    for res, r in report["detector"].items():
        decode, detect = r["jpeg_decode"]["median_ms"], r["detect_align_measure"]["median_ms"]
        lines.append(f"| {res} | {decode} | {detect} | {r['faces']} |")
    lines += ["", "## Embedder", "", "| batch | ms per batch | ms per face |", "| --- | --- | --- |"]
    for batch, r in report["embedder"].items():
        lines.append(f"| {batch.removeprefix('batch_')} | {r['median_ms']} | {r['per_face_ms']} |")
    lines += ["", "## Gallery (Milvus Lite, FLAT, 512-d cosine)", ""]
    lines += [
        "| rows | insert rows/s | 1 query ms | 32 queries ms | peak RSS MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, r in report["gallery"].items():
        lines.append(
            f"| {size} | {r['insert_rows_per_s']} | {r['search_1']['median_ms']} | "
            f"{r['search_32']['median_ms']} | {r['rss_mb_after']} |"
        )
    lines += ["", "## Sampler (720p H.264-class mp4v file, 25 fps native)", ""]
    for name, r in report["sampler"].items():
        lines.append(f"- {name}: {r['cpu_seconds_per_video_second']} s of CPU per second of video")
    e = report["end_to_end"]
    lines += [
        "",
        "## End to end, embedded mode (720p, 10 fps sampled)",
        "",
        f"{e['frames']} frames, {e['faces']} faces, {e['candidates']} candidates in {e['seconds']} s: "
        f"{e['frames_per_s']} frames/s, {e['ms_per_frame']} ms per frame.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, small galleries")
    parser.add_argument("--gallery-sizes", default="", help="comma-separated row counts")
    parser.add_argument("--out", type=Path, default=REPO / "load-tests" / "reports")
    args = parser.parse_args(argv)
    if not (FACES / "scenes").is_dir():
        parser.error(f"test photos not found at {FACES}; set FACESTREAM_FACES")
    repeat = 5 if args.quick else 30
    sizes = [int(s) for s in args.gallery_sizes.split(",") if s] or (
        [1000] if args.quick else [1000, 10_000, 100_000]
    )
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
            "gallery": bench_gallery(sizes, repeat, work),
            "sampler": bench_sampler(work),
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
