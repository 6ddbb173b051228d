"""What the models alone cost on the load test's frames, in this process, on a CPU clock.

The yardstick for the services' CPU per face: the detect path (JPEG decode, detector, landmarks,
alignment, quality) and the embedder run directly, one intra-op thread (as the services run
them), nothing else. Then the same frames through the stage objects (DetectStage, EmbedStage in
runner-sized batches), still without Kafka: the difference is what the stages add (the reviewer's
thumbnail, message building, batching). The CPU clock is time.process_time(): this process's
user+system time, every thread (OpenCV may use threads of its own); nothing else runs in this
process meanwhile.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from facestream.imaging import decode_jpeg
from facestream.messages import Embedding, Face, Frame, FrameRef
from facestream.settings import DetectorSettings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder

BATCH = 32
"""The runner's default batch size (--batch-size)."""


def models_cost(
    frames: Sequence[Frame],
    finder: FaceFinder,
    embedder: FaceEmbedder,
    clock: Callable[[], float] = time.process_time,
    warm_up: bool = True,
) -> dict[str, Any]:
    """CPU seconds of decode + detect path per frame and of the embedder per face (one face per call:
    on this CPU batching does not make a face cheaper, docs/benchmarks.md), over `frames`, on
    `clock` (time.thread_time when other threads of this process are busy meanwhile)."""
    for frame in frames[:3] if warm_up else []:  # first calls allocate
        for obs in finder.find(decode_jpeg(frame.jpeg, max_pixels=10**8)):
            embedder.embed(obs.aligned[None])
    decode_s = detect_s = embed_s = 0.0
    faces = 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for frame in frames:
        t0 = clock()
        image = decode_jpeg(frame.jpeg, max_pixels=10**8)
        t1 = clock()
        usable = [obs for obs in finder.find(image) if obs.usable]
        t2 = clock()
        for obs in usable:
            embedder.embed(obs.aligned[None])
        t3 = clock()
        decode_s, detect_s, embed_s = decode_s + t1 - t0, detect_s + t2 - t1, embed_s + t3 - t2
        faces += len(usable)
    total = decode_s + detect_s + embed_s
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clock": clock.__name__,
        "system_cpu_s": round(after.ru_stime - usage.ru_stime, 3),
        "minor_faults": after.ru_minflt - usage.ru_minflt,
        "frames": len(frames),
        "faces": faces,
        "jpeg_decode_cpu_s": round(decode_s, 3),
        "detect_path_cpu_s": round(detect_s, 3),
        "embedder_cpu_s": round(embed_s, 3),
        "total_cpu_s": round(total, 3),
        "cpu_s_per_frame": round(total / max(1, len(frames)), 5),
        "cpu_s_per_face": round(total / max(1, faces), 5),
        "jpeg_decode_cpu_s_per_frame": round(decode_s / max(1, len(frames)), 5),
        "detect_path_cpu_s_per_frame": round(detect_s / max(1, len(frames)), 5),
        "embedder_cpu_s_per_face": round(embed_s / max(1, faces), 5),
    }


def stages_cost(
    frames: Sequence[Frame], finder: FaceFinder, embedder: FaceEmbedder
) -> tuple[dict[str, Any], list[Face], list[Embedding]]:
    """The same frames through DetectStage and EmbedStage in batches of BATCH, on the CPU clock;
    also returns the faces and embeddings they made (the scale-out trials' inputs)."""
    settings = DetectorSettings()
    detect = DetectStage(
        finder, max_frame_pixels=settings.max_frame_pixels, thumbnail_px=settings.thumbnail_px
    )
    embed = EmbedStage(embedder)
    faces: list[Face] = []
    embeddings: list[Embedding] = []
    t0 = time.process_time()
    for start in range(0, len(frames), BATCH):
        for outcome in detect.process(frames[start : start + BATCH]):
            faces += outcome if isinstance(outcome, list) else []
    t1 = time.process_time()
    for start in range(0, len(faces), BATCH):
        for outcome in embed.process(faces[start : start + BATCH]):
            embeddings += outcome if isinstance(outcome, list) else []
    t2 = time.process_time()
    return (
        {
            "frames": len(frames),
            "faces": len(faces),
            "detect_stage_cpu_s": round(t1 - t0, 3),
            "embed_stage_cpu_s": round(t2 - t1, 3),
            "total_cpu_s": round(t2 - t0, 3),
            "cpu_s_per_face": round((t2 - t0) / max(1, len(faces)), 5),
            "embedder_cpu_s_per_face_in_batches": round((t2 - t1) / max(1, len(faces)), 5),
        },
        faces,
        embeddings,
    )


def restamped(messages: Sequence[Any], count: int, cameras: int = 64) -> list[Any]:
    """`count` copies of `messages` in turn, each with its own frame reference: camera ids spread
    over `cameras` keys (so the trials' partitions get even shares), capture times now."""
    base_ms = int(time.time() * 1000)
    out = []
    for n in range(count):
        message = messages[n % len(messages)]
        camera = f"fill-{n % cameras:03d}"
        ms = base_ms + n
        out.append(replace(message, ref=FrameRef(camera, f"{camera}@{ms}", ms, f"synthetic://{camera}")))
    return out
