"""facestream against face_recognition (dlib HOG), same frames, one thread (issue 10).

The issue's goal: a whole frame >= 30x cheaper in CPU than face_recognition, with the same
people found and no false identification. This measures it on the same sampled frames:

  (a) face_recognition 1.3.0 per frame: JPEG decode, `face_locations(model="hog")`,
      `face_encodings`, nearest enrolled encoding within tolerance 0.6 (its defaults), in the
      separate venv of scripts/face-recognition-venv.sh (load-tests/face_recognition_worker.py);
  (b) facestream per frame, tracking on as the services default (`tracks_for(DetectorSettings())`):
      DetectStage (JPEG decode, detect, landmarks, align, quality gates, tracker), EmbedStage on
      the faces it forwards, MatchStage against a Milvus Lite gallery;
  (c) the same with tracking off (every face of every frame embedded and searched).

Both sides enroll ../shared/data/faces/enroll (identity from the file name) the way they would,
and are given the same JPEG files: the frames facestream's sampler and FrameEncoder make from
the bundled sample video and from a 720p H.264 clip of ../shared/data/faces photos (the clip of
docs/tracking.md, load-tests/tracking.py: obama, kit_harington who is never enrolled, and
alex_lacamoire, an equal share each), sampled at the demo's rate (the sampler's default fps).
Sampling the video is common to both sides and not counted; enrollment and model loading are
not counted either.

Clocks: CPU from time.process_time() of each side's own process (user + system, all threads),
taken around each frame. facestream's gallery search runs in Milvus Lite, which (milvus-lite 3)
serves from a thread of this process, so process_time covers it; as a check, the CPU of any
child process over the run (from /proc, 10 ms ticks) is added to (b) and (c) and shown apart.
Wall from time.perf_counter(), for information only. Everything runs single-threaded:
OMP/BLAS threads 1 on both sides (the script starts itself again with them set if they are not),
onnxruntime intra-op threads 1, OpenCV threads 1.

    .venv/bin/python load-tests/compare_face_recognition.py [--seconds 30] [--fps F] [--out DIR]
        [--facestream-only] [--face-recognition-python PATH]

Writes DIR/compare-face-recognition-<timestamp>.json and .md (default DIR: load-tests/reports).
`--facestream-only` measures (b) and (c) alone (the test does, at a tiny size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import onnxruntime as ort
from prometheus_client import CollectorRegistry

from facestream.camera.sampler import FrameEncoder
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.commands.demo import load_manifest, sample_dir
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.messages import Embedding, Frame, Hit
from facestream.runtime.metrics import DetectorMetrics
from facestream.settings import (
    DetectorSettings,
    EmbedderSettings,
    GallerySettings,
    MatcherSettings,
    ModelSettings,
    SamplerSettings,
)
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.match import MatchStage
from facestream.stages.tracks import tracks_for
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scalelab.media import make_h264_video  # noqa: E402
from tracking import CLIP_PHOTOS  # noqa: E402  (the clip of docs/tracking.md)

REPO = HERE.parent
FACES = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))
WORKER = HERE / "face_recognition_worker.py"
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
"""Read when numpy, OpenCV and dlib start their thread pools, so set before the process starts."""
VENV_SCRIPT = REPO / "scripts" / "face-recognition-venv.sh"
TOLERANCE = 0.6
"""face_recognition's default `tolerance` (compare_faces): the distance it calls a match."""
UPSAMPLE = 1
"""face_recognition's default `number_of_times_to_upsample` (finds faces down to ~40 px)."""
NEAR_S = 0.25
"""A person counts as shown in a frame when shown within this much media time of it, so that a
frame at a cut between two photos may name either of them without being a false identification."""


def person_of(photo: str) -> str:
    """probe/kit_harington_unenrolled.jpg -> kit_harington; enroll/obama_2.jpg -> obama."""
    stem = Path(photo).stem.removesuffix("_unenrolled")
    return stem.rsplit("_", 1)[0] if Path(photo).parent.name == "enroll" else stem


def enroll_photos(faces: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for photo in sorted((faces / "enroll").glob("*.jpg")):
        out.setdefault(person_of(str(photo)), []).append(photo)
    return out


@dataclass
class Clip:
    """The sampled frames of one video, as JPEG files both sides read, and who is shown in each."""

    name: str
    source: str
    frames: list[Frame]
    paths: list[Path]
    shown: list[set[str]]


def sample(
    video: Path, camera_id: str, fps: float, shown_at: Callable[[float], set[str]], work: Path
) -> Clip:
    """The frames facestream would publish for this file: its sampler at `fps`, its FrameEncoder."""
    spec = CameraSpec(camera_id=camera_id, url=str(video), fps=fps, start_at_ms=0)
    source = open_source(spec, default_fps=fps)
    source.open()
    encoder = FrameEncoder()
    frames = []
    try:
        while (captured := source.read()) is not None:
            frames.append(encoder.frame(spec, captured))
    finally:
        source.close()
    folder = work / "frames" / camera_id
    folder.mkdir(parents=True)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"{i:05d}.jpg")
        paths[-1].write_bytes(frame.jpeg)
    shown = [
        shown_at(f.ref.captured_at_ms / 1000 - NEAR_S) | shown_at(f.ref.captured_at_ms / 1000 + NEAR_S)
        for f in frames
    ]
    return Clip(camera_id, video.name, frames, paths, shown)


def bundled_clip(fps: float, work: Path) -> Clip:
    root = sample_dir()
    video = load_manifest(root).video

    def shown_at(t: float) -> set[str]:
        return {a.person for a in video.appearances if a.from_s <= t < a.to_s}

    return sample(root / video.file, "bundled-sample", fps, shown_at, work)


def long_clip(seconds: float, fps: float, work: Path) -> tuple[Clip, dict[str, Any]]:
    photos = [FACES / p for p in CLIP_PHOTOS]
    media = make_h264_video(photos, work / "clip.mp4", seconds=seconds, gop_s=1.0)
    total = max(1, round(media.seconds * media.fps))
    per_photo = max(1, total // len(photos))  # make_h264_video's layout: an equal share each

    def shown_at(t: float) -> set[str]:
        i = min(total - 1, max(0, round(t * media.fps)))
        return {person_of(CLIP_PHOTOS[min(i // per_photo, len(photos) - 1)])}

    return sample(media.path, f"clip-{seconds:g}s-720p", fps, shown_at, work), media.describe()


def children_cpu_s() -> float:
    """CPU seconds (user + system, from /proc) of this process's live descendants: none with
    milvus-lite 3 (in-process), but a gallery served from a child process would be counted."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    return sum(times[pid] for pid in mine)


def facestream_side(
    clip: Clip, finder: FaceFinder, embedder: FaceEmbedder, gallery: Gallery, *, track: bool
) -> dict[str, Any]:
    """(b) or (c) on one clip: each frame read from its JPEG file, detected (and tracked), its
    forwarded faces embedded and searched, as the services do; a new tracker per clip."""
    registry = CollectorRegistry()
    detect = DetectStage(
        finder,
        max_frame_pixels=DetectorSettings().max_frame_pixels,
        thumbnail_px=DetectorSettings().thumbnail_px,
        tracks=tracks_for(DetectorSettings(track_faces=track)),
        metrics=DetectorMetrics.create(registry),
    )
    matcher = MatcherSettings()
    embed = EmbedStage(embedder)
    match = MatchStage(gallery, threshold=matcher.match_threshold, top_k=matcher.top_k)
    rows = []
    children0, cpu0, wall0 = children_cpu_s(), time.process_time(), time.perf_counter()
    for frame, path in zip(clip.frames, clip.paths, strict=True):
        started = time.process_time()
        read = Frame(frame.ref, frame.width, frame.height, path.read_bytes())
        (faces,) = detect.process([read])
        assert isinstance(faces, list), faces
        detected = time.process_time()
        embeddings: list[Embedding] = []
        if faces:
            embeddings = [e for out in embed.process(faces) if isinstance(out, list) for e in out]
        embedded = time.process_time()
        hits: list[Hit] = []
        if embeddings:
            hits = [h for out in match.process(embeddings) if isinstance(out, list) for h in out]
        done = time.process_time()
        rows.append(
            {
                "cpu_ms": round((done - started) * 1000, 3),
                "stages_ms": {
                    "read + detect + track": round((detected - started) * 1000, 3),
                    "embed": round((embedded - detected) * 1000, 3),
                    "match (gallery)": round((done - embedded) * 1000, 3),
                },
                "embedded": len(embeddings),
                "identities": [(h.identity, h.score) for h in hits],
            }
        )
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    children_s = children_cpu_s() - children0

    def count(name: str, **labels: str) -> int:
        return round(registry.get_sample_value(name, labels) or 0)

    return {
        "tracking": track,
        "cpu_s": round(cpu_s, 4),
        "child_processes_cpu_s": round(children_s, 3),
        "wall_s": round(wall_s, 4),
        "faces_detected": count("facestream_faces_detected_total"),
        "faces_dropped_by_tracker": count("facestream_faces_tracked_total", decision="same"),
        "frames": rows,
    }


def face_recognition_side(python: str, clips: list[Clip], enroll: dict[str, list[Path]], work: Path) -> Any:
    """(a): the worker in the separate venv, one thread; it reports its own CPU time."""
    job = {
        "enroll": {identity: [str(p) for p in photos] for identity, photos in enroll.items()},
        "clips": {clip.name: [str(p) for p in clip.paths] for clip in clips},
        "tolerance": TOLERANCE,
        "upsample": UPSAMPLE,
    }
    (work / "job.json").write_text(json.dumps(job))
    done = subprocess.run(
        [python, str(WORKER), str(work / "job.json")],
        capture_output=True,
        text=True,
        env={**os.environ, **ONE_THREAD},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"face_recognition worker failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def face_recognition_python(given: str | None) -> str:
    """The venv's Python: as given, or from scripts/face-recognition-venv.sh (creates it once)."""
    if given:
        return given
    done = subprocess.run([str(VENV_SCRIPT), "env"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{VENV_SCRIPT.name} failed:\n{done.stderr[-2000:]}")
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return lines["FACE_RECOGNITION_PYTHON"]


def summarise(run: dict[str, Any], clip: Clip, enrolled: set[str]) -> dict[str, Any]:
    """Per-frame CPU, embeddings, who was found, and any identification of someone not shown."""
    rows = run["frames"]
    cpu = [r["cpu_ms"] for r in rows]
    found = sorted({name for r in rows for name, _ in r["identities"]})
    false = [
        {"frame": i, "identity": name, "shown": sorted(clip.shown[i])}
        for i, r in enumerate(rows)
        for name, _ in r["identities"]
        if name not in clip.shown[i]
    ]
    expected = sorted({p for s in clip.shown for p in s} & enrolled)
    children_s = run.get("child_processes_cpu_s", 0.0)
    return {
        "frames": len(rows),
        "embeddings": sum(r.get("embedded", r.get("faces", 0)) for r in rows),
        "cpu_ms_per_frame": round(1000 * (sum(cpu) / 1000 + children_s) / len(rows), 3),
        "process_cpu_ms_per_frame": round(sum(cpu) / len(rows), 3),
        "child_processes_cpu_ms_per_frame": round(1000 * children_s / len(rows), 3),
        "median_process_cpu_ms": round(statistics.median(cpu), 3),
        "stages_ms_per_frame": {
            stage: round(sum(r["stages_ms"][stage] for r in rows) / len(rows), 3)
            for stage in rows[0]["stages_ms"]
        },
        "max_process_cpu_ms": round(max(cpu), 3),
        "wall_ms_per_frame": round(1000 * run["wall_s"] / len(rows), 3),
        "identities_found": found,
        "enrolled_people_shown": expected,
        "missed": sorted(set(expected) - set(found)),
        "false_identifications": false,
    }


SIDES = {
    "face_recognition": "(a) face_recognition, HOG",
    "facestream_tracking": "(b) facestream, tracking on",
    "facestream_no_tracking": "(c) facestream, tracking off",
}


def machine() -> str:
    model = "unknown CPU"
    try:
        done = subprocess.run(["lscpu"], capture_output=True, text=True, check=False)
        lines = done.stdout.splitlines()
        named = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")]
        model = named[0] if named else model
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, OpenCV {cv2.__version__}"
    )


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    a = results.get("face_recognition")
    if a is None:
        return {"a_over_b": None, "a_over_c": None}
    return {
        "a_over_b": round(a["cpu_ms_per_frame"] / results["facestream_tracking"]["cpu_ms_per_frame"], 2),
        "a_over_c": round(a["cpu_ms_per_frame"] / results["facestream_no_tracking"]["cpu_ms_per_frame"], 2),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# facestream vs face_recognition (issue 10), {report['at']}",
        "",
        f"Machine: {report['machine']}",
        "",
        f"face_recognition: {report.get('face_recognition_versions') or 'not measured (--facestream-only)'}",
        "",
        f"Frames sampled at {report['fps']:g} fps (the demo's rate); the same JPEG files for every side. "
        "CPU = time.process_time() of each side's own process around each frame (one thread); "
        "facestream's includes its Milvus Lite gallery (a thread of its process) and adds any child "
        "process's CPU over the run (/proc, shown apart). "
        "Wall = time.perf_counter(), for information.",
        "",
        "| clip | side | frames | CPU ms/frame | of which child processes | median process CPU ms "
        "| embeddings | found | missed | false identifications |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for clip, entry in report["clips"].items():
        for side, label in SIDES.items():
            r = entry["results"].get(side)
            if r is None:
                continue
            lines.append(
                f"| {clip} | {label} | {r['frames']} | {r['cpu_ms_per_frame']} | "
                f"{r['child_processes_cpu_ms_per_frame']} | {r['median_process_cpu_ms']} | "
                f"{r['embeddings']} | "
                f"{', '.join(r['identities_found']) or 'nobody'} | {', '.join(r['missed']) or '-'} | "
                f"{len(r['false_identifications'])} |"
            )
    lines += [
        "",
        "Where the CPU goes: process CPU ms per frame by step, mean over the clip's frames",
        "",
        "| clip | side | steps |",
        "| --- | --- | --- |",
    ]
    for clip, entry in report["clips"].items():
        for side, label in SIDES.items():
            r = entry["results"].get(side)
            if r is not None:
                steps = ", ".join(f"{k} {v}" for k, v in r["stages_ms_per_frame"].items())
                lines.append(f"| {clip} | {label} | {steps} |")
    lines += ["", "| clip | (a)/(b) CPU | (a)/(c) CPU |", "| --- | --- | --- |"]
    for clip, entry in [*report["clips"].items(), ("all clips, frame-weighted", report["overall"])]:
        q = entry["ratios"]
        shown = [f"{q[k]}x" if q[k] is not None else "not measured" for k in ("a_over_b", "a_over_c")]
        lines.append(f"| {clip} | {shown[0]} | {shown[1]} |")
    lines += ["", f"Goal of issue 10: (a)/(b) >= 30x. {report['verdict']}", ""]
    return "\n".join(lines)


def overall(clips: dict[str, Any]) -> dict[str, Any]:
    """Every clip's frames together: total CPU over total frames, per side."""
    out: dict[str, Any] = {}
    for side in SIDES:
        rs = [c["results"][side] for c in clips.values() if side in c["results"]]
        if not rs:
            continue
        frames = sum(r["frames"] for r in rs)
        out[side] = {
            "frames": frames,
            "embeddings": sum(r["embeddings"] for r in rs),
            "cpu_ms_per_frame": round(sum(r["cpu_ms_per_frame"] * r["frames"] for r in rs) / frames, 3),
        }
    return {"results": out, "ratios": ratios(out)}


def verdict(report: dict[str, Any]) -> str:
    ratio = report["overall"]["ratios"]["a_over_b"]
    if ratio is None:
        return "Not measured: face_recognition was not run."
    wrong = [
        f"{clip} {side}"
        for clip, entry in report["clips"].items()
        for side, r in entry["results"].items()
        if r["false_identifications"] or r["missed"]
    ]
    accuracy = (
        "every side found every enrolled person shown and made no false identification"
        if not wrong
        else f"misses or false identifications in: {', '.join(wrong)}"
    )
    reached = "reached" if ratio >= 30 else "NOT reached"
    return f"{reached}: {ratio}x over all clips (CPU clocks); {accuracy}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the 720p clip (default 30)")
    parser.add_argument(
        "--fps", type=float, default=SamplerSettings().fps, help="sampling rate (default: the demo's)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "load-tests" / "reports")
    parser.add_argument("--facestream-only", action="store_true", help="measure (b) and (c) only")
    parser.add_argument("--face-recognition-python", help="default: scripts/face-recognition-venv.sh's")
    args = parser.parse_args(argv)
    if any(os.environ.get(k) != v for k, v in ONE_THREAD.items()):
        # The thread pools are sized when their libraries load, already done by the imports above.
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, **ONE_THREAD})
    if not (FACES / "enroll").is_dir():
        parser.error(f"test photos not found at {FACES}; set FACESTREAM_FACES")
    python = None if args.facestream_only else face_recognition_python(args.face_recognition_python)
    cv2.setNumThreads(1)
    models = ModelSettings(execution_provider="cpu", inference_threads=1)
    fetch_builtin_models(models.model_dir)
    finder = build_finder(DetectorSettings(), models)
    embedder = build_embedder(EmbedderSettings(), models)
    enroll = enroll_photos(FACES)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundled = bundled_clip(args.fps, work)
        clip, media = long_clip(args.seconds, args.fps, work)
        clips = [bundled, clip]
        gallery = Gallery(GallerySettings(gallery=str(work / "gallery")))
        try:
            enroller = Enroller(finder, embedder, gallery, GallerySettings())
            for identity, photos in enroll.items():
                enroller.enroll(identity, photos)
            # Warm-up, not counted: the first inference of each model and the first search.
            facestream_side(Clip("warm-up", "", clip.frames[:2], clip.paths[:2], clip.shown[:2]),
                            finder, embedder, gallery, track=False)  # fmt: skip
            runs: dict[str, dict[str, Any]] = {c.name: {} for c in clips}
            for c in clips:
                for side, track in (("facestream_tracking", True), ("facestream_no_tracking", False)):
                    runs[c.name][side] = facestream_side(c, finder, embedder, gallery, track=track)
        finally:
            gallery.close()
        fr: dict[str, Any] | None = None
        if python is not None:
            fr = face_recognition_side(python, clips, enroll, work)
            for c in clips:
                runs[c.name]["face_recognition"] = fr["clips"][c.name]
    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "fps": args.fps,
        "clip_media": media,
        "face_recognition_versions": fr and fr["versions"],
        "face_recognition_threads": fr and fr["process_threads"],
        "settings": {
            "face_recognition": {"model": "hog", "upsample": UPSAMPLE, "tolerance": TOLERANCE},
            "facestream": {
                "detector": DetectorSettings().model_dump(),
                "match_threshold": MatcherSettings().match_threshold,
                "inference_threads": 1,
                "opencv_threads": 1,
            },
        },
        "enrolled": {k: [p.name for p in v] for k, v in enroll.items()},
        "clips": {},
        "runs": runs,
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    for c in clips:
        results = {side: summarise(run, c, set(enroll)) for side, run in runs[c.name].items()}
        report["clips"][c.name] = {"source": c.source, "results": results, "ratios": ratios(results)}
    report["overall"] = overall(report["clips"])
    report["verdict"] = verdict(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"compare-face-recognition-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"compare-face-recognition-{stamp}.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
