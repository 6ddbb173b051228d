"""The pipeline through a real broker: throughput, CPU per face against the bare models, latency
from a frame's capture to its hit (and candidate) being readable, and scale-out per stage.

What runs: a broker started for the part (scripts/kafka.sh); a Milvus Lite gallery with 4 people
enrolled under an authorisation (the real CLI); detector, embedder and matcher as separate
`facestream <service>` processes on the CPU execution provider, one intra-op thread, product
defaults otherwise (batch 32, 50 ms window, a transaction per batch) except a short episode gap
(EPISODE_GAP_S) so that the test's scenes open candidates often enough to measure. Synthetic
cameras (cameras.py) publish Frame messages straight to `frames`.

Phases, in order (none overlaps another):
1. bare models: decode + detect path + embedder on a sample of the cameras' frames, in this
   process, on time.process_time (bare.py); then the same through the stage objects;
2. idle: the services running with no input, 3 s (their idle CPU and the machine's);
3. saturation: a burst of frames, drained end to end; throughput per stage, CPU per face;
4. latency: the cameras in real time at the rate that should put the machine near 70% CPU (from
   phases 2 and 3), frame -> hit visible to a read_committed consumer (visibility.py);
5. profile: the same load again for a window in which every service's Python threads are
   sampled on their CPU clocks (cpuprofile.py; the services were started through it, and it is
   idle outside this window), plus every OS thread's CPU from /proc;
6. scale-out: per stage, a fresh group on its own topics, kept backlogged, grown to 1, 2, 4
   replicas; throughput (wall) and CPU per message (CPU clock) in a steady window at each size.

Consumer lag of every group is sampled about once a second throughout.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facestream import codec
from facestream.codec import Codec
from facestream.messages import Frame
from facestream.settings import DetectorSettings, EmbedderSettings, KafkaSettings, ModelSettings
from facestream.transport.kafka import KafkaProducer
from facestream.vision.factory import build_embedder, build_finder

from . import Context
from .bare import models_cost, restamped, stages_cost
from .cameras import FRAME_SIZE, Camera, Mix, Publisher, cut_sprites, frame_message, render_cameras
from .clocks import MachineCpu, descendants, process_cpu_s, tree_cpu_s
from .cluster import ENROLLED, Deployment, LagReader, Service, create_topics, enroll, start_broker
from .cpuprofile import thread_cpu
from .visibility import Seen, Visibility

PREFIX = "pipe."
STAGES = ("detector", "embedder", "matcher")
INPUT = {"detector": "frames", "embedder": "faces", "matcher": "embeddings"}
OUTPUT = {"detector": "faces", "embedder": "embeddings", "matcher": "hits"}
PARTITIONS = {"frames": 4, "faces": 4, "embeddings": 4, "hits": 2, "matches": 2}
EPISODE_GAP_S = 2.0
"""Shorter than the product's 30 s so that a person who comes back a few scenes later opens a new
episode (and a candidate): the `matches` latency needs more than one sample per person and camera."""
TARGET_LOAD = 0.70
LATENCY_GOAL_P99_MS = 300.0
CPU_RATIO_GOAL = 1.25
SPEEDUP_GOAL = 1.8
PROFILER = Path(__file__).with_name("cpuprofile.py")


@dataclass(frozen=True)
class Size:
    cameras: int
    segments: int
    """Scenes per camera; the camera's frames loop over them."""
    frames_per_segment: int
    bare_frames: int
    """Frames (a uniform sample of every camera's) the bare models run on."""
    saturation_frames: int
    warmup_s: float
    latency_s: float
    profile_s: float
    replicas: tuple[int, ...]
    scale_window_s: float
    """Steady-state window measured at each replica count (wall)."""


SIZES = {
    "smoke": Size(2, 6, 5, 12, 30, 2, 15, 4, (1, 2), 2),
    "quick": Size(4, 10, 6, 60, 200, 5, 45, 15, (1, 2, 4), 8),
    "full": Size(8, 16, 6, 160, 600, 10, 120, 30, (1, 2, 4), 15),
}


# -- readings ----------------------------------------------------------------------------------


def counts(services: dict[str, Service]) -> dict[str, float]:
    """The pipeline services' counters (messages in, outputs out), summed over replicas of a stage."""
    out: dict[str, float] = {}
    for key, svc in services.items():
        stage = key.split("#")[0]
        for what, name in (
            ("in", "facestream_stage_messages_total"),
            ("out", "facestream_stage_outputs_total"),
            ("batches", "facestream_stage_batch_duration_seconds_count"),
            ("batch_s", "facestream_stage_batch_duration_seconds_sum"),
        ):
            out[f"{stage}_{what}"] = out.get(f"{stage}_{what}", 0.0) + svc.metric(name, {"stage": stage})
        if stage == "matcher":
            out["hits"] = out.get("hits", 0.0) + svc.metric("facestream_hits_total")
            out["candidates"] = out.get("candidates", 0.0) + svc.metric("facestream_candidates_total")
    return out


def tree_threads(pid: int) -> dict[str, float]:
    """CPU seconds of a service's process tree split by OS thread kind (its own threads) and by
    child process (e.g. a Milvus Lite server), from /proc."""
    out = thread_cpu(pid)
    for child in descendants(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            out[f"child process {comm}"] = out.get(f"child process {comm}", 0.0) + process_cpu_s(child)
        except (OSError, IndexError, ValueError):
            continue
    return out


def kernel_counters(pid: int) -> dict[str, float]:
    """User and system CPU seconds and minor page faults of one process (its threads, not its
    children), from /proc: a service whose system time is high is paying the kernel, e.g. for
    fresh pages of large allocations."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "user_cpu_s": int(fields[11]) / ticks,
        "system_cpu_s": int(fields[12]) / ticks,
        "minor_faults": int(fields[7]),
    }


@dataclass(frozen=True)
class Reading:
    wall_s: float
    epoch_ms: float
    machine: MachineCpu
    cpu_s: dict[str, float]
    broker_cpu_s: float
    harness_cpu_s: float
    counts: dict[str, float]
    threads: dict[str, dict[str, float]]
    kernel: dict[str, dict[str, float]]


def read(d: Deployment, keys: Sequence[str] | None = None) -> Reading:
    chosen = {k: s for k, s in d.services.items() if keys is None or k in keys}
    broker = d.broker_pid()
    return Reading(
        wall_s=time.monotonic(),
        epoch_ms=time.time() * 1000,
        machine=MachineCpu.read(),
        cpu_s={k: s.cpu_s() for k, s in chosen.items()},
        broker_cpu_s=tree_cpu_s(broker) if broker else float("nan"),
        harness_cpu_s=time.process_time(),
        counts=counts(chosen),
        threads={k: tree_threads(s.proc.pid) for k, s in chosen.items()},
        kernel={k: kernel_counters(s.proc.pid) for k, s in chosen.items()},
    )


def between(a: Reading, b: Reading) -> dict[str, Any]:
    """What happened between two readings: wall time, the machine's load, each process tree's CPU."""
    wall = b.wall_s - a.wall_s
    cpu = {k: round(b.cpu_s[k] - a.cpu_s[k], 3) for k in b.cpu_s if k in a.cpu_s}
    return {
        "wall_s": round(wall, 2),
        "machine_cpu_load": round(b.machine.load_since(a.machine), 3),
        "services_cpu_s": cpu,
        "services_cpu_s_total": round(sum(cpu.values()), 3),
        "broker_cpu_s": round(b.broker_cpu_s - a.broker_cpu_s, 3),
        "harness_cpu_s": round(b.harness_cpu_s - a.harness_cpu_s, 3),
        "counts": {k: b.counts.get(k, 0.0) - a.counts.get(k, 0.0) for k in b.counts},
        "kernel": {
            svc: {k: round(v - a.kernel.get(svc, {}).get(k, 0.0), 3) for k, v in counters.items()}
            for svc, counters in b.kernel.items()
        },
        "threads_cpu_s": {
            svc: {kind: round(v - a.threads.get(svc, {}).get(kind, 0.0), 3) for kind, v in kinds.items()}
            for svc, kinds in b.threads.items()
        },
    }


class LagRecorder:
    """Every group's lag about once a second (wall), on a thread, labelled with the phase."""

    def __init__(self, kafka: KafkaSettings, started: float, every_s: float = 1.0) -> None:
        self._reader: LagReader | None = LagReader(kafka)
        self._started = started
        self._every_s = every_s
        self.groups: dict[str, str] = {}
        self.phase = ""
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lag", daemon=True)

    def start(self, groups: dict[str, str]) -> None:
        self.groups = dict(groups)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            groups = dict(self.groups)  # the phases change it meanwhile
            if groups and self._reader is not None:
                lag = self._reader.lags(groups)
                t = round(time.monotonic() - self._started, 1)
                self.samples.append({"t_wall_s": t, "phase": self.phase, "lag": lag})

    def stop(self) -> None:
        """Stop sampling and drop the admin client: call it before the broker stops (librdkafka
        can block for good destroying a client whose broker is gone)."""
        self._stop.set()
        self._thread.join(30)
        if self._reader is not None:
            self._reader.close()
        self._reader = None


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)

    return {
        "n": len(ordered),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


def wait_for(check: Callable[[], bool], timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


# -- the phases --------------------------------------------------------------------------------


def start_pipeline(d: Deployment, work: Path, gallery: Path) -> None:
    """Detector, embedder, matcher, each under the (idle) profiler wrapper."""
    common = ("--execution-provider", "cpu", "--inference-threads", "1")
    for stage in STAGES:
        extra: tuple[str, ...] = common if stage != "matcher" else ()
        if stage == "matcher":
            extra = ("--gallery", str(gallery), "--episodes-data-dir", str(work / "faust"))
            extra += ("--episode-gap-s", str(EPISODE_GAP_S))
        wrapper = (sys.executable, str(PROFILER), str(work / f"profile-{stage}.json"))
        d.start(stage, *extra, wrapper=wrapper)
    for svc in d.services.values():
        svc.wait_ready()


def saturation(d: Deployment, publisher: Publisher, frames: int) -> dict[str, Any]:
    """A burst of `frames`, drained end to end: each stage's rate while all three share the machine."""
    before = read(d)
    base = before.counts
    done: dict[str, float] = {}
    started = time.monotonic()
    publisher.burst(frames)

    def drained() -> bool:
        c = counts(d.services)
        now = time.monotonic()
        det_in, det_out = c["detector_in"] - base["detector_in"], c["detector_out"] - base["detector_out"]
        emb_in, emb_out = c["embedder_in"] - base["embedder_in"], c["embedder_out"] - base["embedder_out"]
        match_in = c["matcher_in"] - base["matcher_in"]
        if det_in >= frames:
            done.setdefault("detector", now)
            if emb_in >= det_out:
                done.setdefault("embedder", now)
                if match_in >= emb_out:
                    done.setdefault("matcher", now)
        return "matcher" in done

    finished = wait_for(drained, timeout_s=max(120.0, frames * 0.5), every_s=0.1)
    after = read(d)
    span = between(before, after)
    c = span["counts"]
    faces = c["detector_out"]
    per_stage = {}
    for stage, (unit, n) in {
        "detector": ("frames", c["detector_in"]),
        "embedder": ("faces", c["embedder_in"]),
        "matcher": ("faces", c["matcher_in"]),
    }.items():
        wall = done.get(stage, after.wall_s) - started
        per_stage[stage] = {f"{unit}_per_s_wall": round(n / wall, 2), "busy_wall_s": round(wall, 2)}
    per_stage["detector"]["faces_per_s_wall"] = round(
        faces / (done.get("detector", after.wall_s) - started), 2
    )
    return {
        **span,
        "finished": finished,
        "frames": c["detector_in"],
        "faces": faces,
        "hits": c["hits"],
        "frames_per_s_wall": round(c["detector_in"] / span["wall_s"], 2),
        "faces_per_s_wall": round(faces / span["wall_s"], 2),
        "per_stage": per_stage,
        "cpu_s_per_face": round(span["services_cpu_s_total"] / max(1.0, faces), 5),
        "cpu_s_per_face_with_broker": round(
            (span["services_cpu_s_total"] + span["broker_cpu_s"]) / max(1.0, faces), 5
        ),
    }


def offered_rate(idle_load: float, sat_load: float, sat_rate: float) -> tuple[float, str]:
    """Frames/s that should put the machine at TARGET_LOAD, by a straight line from idle to
    saturation; the reason when that line cannot reach it."""
    if sat_load - idle_load <= 0.05:
        return 0.5 * sat_rate, "saturation hardly loaded the machine: half the saturation rate"
    if sat_load < TARGET_LOAD:
        return (
            0.9 * sat_rate,
            f"the pipeline saturates at {sat_load:.0%} machine CPU: 90% of its saturation rate",
        )
    share = (TARGET_LOAD - idle_load) / (sat_load - idle_load)
    return max(
        0.1, share
    ) * sat_rate, f"interpolated between idle ({idle_load:.0%}) and saturation ({sat_load:.0%})"


def latency_stats(seen: Sequence[Seen], t0_ms: float, t1_ms: float) -> dict[str, Any]:
    """Frame -> visible per topic (each record), and per frame the hops between topics (first record)."""
    window = [s for s in seen if t0_ms <= s.captured_at_ms < t1_ms]
    by_topic: dict[str, list[float]] = {}
    first: dict[str, dict[str, float]] = {}
    for s in window:
        by_topic.setdefault(s.topic, []).append(s.latency_ms)
        at = first.setdefault(s.topic, {})
        at[s.frame_id] = min(at.get(s.frame_id, math.inf), s.seen_at_ms)
    captured = {s.frame_id: s.captured_at_ms for s in window}
    hops: dict[str, list[float]] = {
        "capture -> faces": [],
        "faces -> embeddings": [],
        "embeddings -> hits": [],
    }
    for frame_id, hit_at in first.get("hits", {}).items():
        faces_at = first.get("faces", {}).get(frame_id)
        emb_at = first.get("embeddings", {}).get(frame_id)
        if faces_at is None or emb_at is None:
            continue
        hops["capture -> faces"].append(faces_at - captured[frame_id])
        hops["faces -> embeddings"].append(emb_at - faces_at)
        hops["embeddings -> hits"].append(hit_at - emb_at)
    return {
        "frame_to_visible_ms": {topic: percentiles(v) for topic, v in sorted(by_topic.items())},
        "hops_of_frames_with_hits_ms": {hop: percentiles(v) for hop, v in hops.items()},
    }


def latency_run(
    d: Deployment, publisher: Publisher, fps: float, size: Size, lags: LagRecorder, idle_load: float
) -> tuple[dict[str, Any], float]:
    """Warm up, correct the rate once towards TARGET_LOAD, then measure; returns the figures and
    the fps used (the profile window runs at it)."""
    watch = Visibility(
        d.kafka,
        {"faces": codec.FACES, "embeddings": codec.EMBEDDINGS, "hits": codec.HITS, "matches": codec.MATCHES},
    )
    watch.start()
    lags.phase = "latency warm-up"
    a = read(d)
    publisher.realtime(fps, size.warmup_s)
    warm = MachineCpu.read().load_since(a.machine)
    corrected = fps
    if warm - idle_load > 0.05 and abs(warm - TARGET_LOAD) > 0.05:
        corrected = fps * max(0.3, min(2.0, (TARGET_LOAD - idle_load) / (warm - idle_load)))
    lags.phase = "latency"
    publisher.late_ms.clear()
    before = read(d)
    publisher.realtime(corrected, size.latency_s)
    after = read(d)
    lags.phase = "latency drain"
    wait_for(lambda: pipeline_idle(d), timeout_s=20, every_s=0.2)
    time.sleep(0.5)  # the last transactions' markers
    seen = watch.stop()
    span = between(before, after)
    c = span["counts"]
    faces = c["detector_out"]
    result = {
        **span,
        "cameras": len(publisher.cameras),
        "fps_per_camera": round(corrected, 3),
        "fps_before_correction": round(fps, 3),
        "load_in_warm_up": round(warm, 3),
        "offered_frames_per_s": round(corrected * len(publisher.cameras), 2),
        "frames": c["detector_in"],
        "faces": faces,
        "hits": c["hits"],
        "candidates": c["candidates"],
        "frames_per_s_wall": round(c["detector_in"] / span["wall_s"], 2),
        "faces_per_s_wall": round(faces / span["wall_s"], 2),
        "cpu_s_per_face": round(span["services_cpu_s_total"] / max(1.0, faces), 5),
        "cpu_s_per_face_with_broker": round(
            (span["services_cpu_s_total"] + span["broker_cpu_s"]) / max(1.0, faces), 5
        ),
        "publish_late_ms": percentiles(publisher.late_ms),
        "batches": {
            stage: {
                "batches": c[f"{stage}_batches"],
                "mean_messages": round(c[f"{stage}_in"] / max(1.0, c[f"{stage}_batches"]), 2),
                "mean_poll_to_commit_ms": round(
                    1000 * c[f"{stage}_batch_s"] / max(1.0, c[f"{stage}_batches"]), 1
                ),
            }
            for stage in STAGES
        },
        "undecodable": watch.undecodable,
        **latency_stats(seen, before.epoch_ms, after.epoch_ms),
    }
    in_window = [s for s in seen if before.epoch_ms <= s.captured_at_ms < after.epoch_ms]
    result["latency_series"] = [
        [round(s.captured_at_ms - before.epoch_ms), round(s.latency_ms, 1)]
        for s in in_window
        if s.topic == "hits"
    ]
    result["matches_series"] = [round(s.latency_ms, 1) for s in in_window if s.topic == "matches"]
    return result, corrected


def pipeline_idle(d: Deployment) -> bool:
    c = counts(d.services)
    return c["embedder_in"] >= c["detector_out"] and c["matcher_in"] >= c["embedder_out"]


class BareUnderLoad:
    """The bare models again, one frame every half second on a thread of this process while the
    services run: what the same calls cost on a machine as busy as theirs (thread CPU clock, so
    this process's other threads do not count; compare with `bare_models_thread_clock`)."""

    def __init__(self, frames: Sequence[Frame], finder: Any, embedder: Any) -> None:
        self._frames, self._finder, self._embedder = frames, finder, embedder
        self._stop = threading.Event()
        self._parts: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._loop, name="bare-under-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        for frame in self._frames:
            if self._stop.wait(0.5):
                return
            self._parts.append(models_cost([frame], self._finder, self._embedder, time.thread_time, False))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(30)
        parts, frames = self._parts, max(1, len(self._parts))
        faces = sum(p["faces"] for p in parts)
        return {
            "clock": "thread_time",
            "frames": len(parts),
            "faces": faces,
            "jpeg_decode_cpu_s_per_frame": round(sum(p["jpeg_decode_cpu_s"] for p in parts) / frames, 5),
            "detect_path_cpu_s_per_frame": round(sum(p["detect_path_cpu_s"] for p in parts) / frames, 5),
            "embedder_cpu_s_per_face": round(sum(p["embedder_cpu_s"] for p in parts) / max(1, faces), 5),
        }


def profile_run(
    d: Deployment, publisher: Publisher, fps: float, seconds: float, work: Path, under_load: BareUnderLoad
) -> dict[str, Any]:
    """The latency run's load again, with every service's profiler on (SIGUSR1 .. SIGUSR2)."""
    publisher.realtime(fps, 2.0)
    before = read(d)
    for svc in d.services.values():
        svc.proc.send_signal(signal.SIGUSR1)
    under_load.start()
    publisher.realtime(fps, seconds)
    for stage, svc in d.services.items():
        (work / f"profile-{stage}.json").unlink(missing_ok=True)
        svc.proc.send_signal(signal.SIGUSR2)
    after = read(d)
    out: dict[str, Any] = {"services": {}}
    for stage in d.services:
        path = work / f"profile-{stage}.json"
        wait_for(path.exists, timeout_s=15)
        out["services"][stage] = json.loads(path.read_text()) if path.exists() else {"error": "no profile"}
    span = between(before, after)
    out["window"] = span
    out["bare_models_under_load"] = under_load.stop()
    out["cpu_s_per_face"] = round(span["services_cpu_s_total"] / max(1.0, span["counts"]["detector_out"]), 5)
    return out


# -- scale-out ---------------------------------------------------------------------------------


def scale_out(
    base: KafkaSettings,
    work: Path,
    stage: str,
    messages: Sequence[bytes],
    size: Size,
    gallery: Path,
    lags: LagRecorder,
    broker_pid: int | None,
) -> dict[str, Any]:
    """One stage on its own topics: a group kept backlogged, grown to each replica count in turn;
    at each, once every replica holds partitions, a steady window is measured."""
    prefix = f"scale-{stage}."
    kafka = base.model_copy(update={"topic_prefix": prefix})
    create_topics(kafka, {**PARTITIONS})
    topic = prefix + INPUT[stage]
    partitions = PARTITIONS[INPUT[stage]]
    group = f"{prefix}facestream-{stage}"
    d = Deployment(work / f"scale-{stage}", kafka)
    d.work.mkdir(parents=True, exist_ok=True)
    producer = KafkaProducer(kafka)
    reader = LagReader(kafka)
    lags.groups[group] = topic
    sent = [0]

    def feed(n: int) -> None:
        for _ in range(n):
            producer.raw.produce(topic, messages[sent[0] % len(messages)], partition=sent[0] % partitions)
            sent[0] += 1
            if sent[0] % 200 == 0:
                producer.raw.poll(0)
        producer.flush(60)

    low = {"detector": 120, "embedder": 240, "matcher": 600}[stage]
    feed(2 * low)

    def top_up() -> None:
        """Keep `low` messages or more waiting (spread evenly over the partitions, as they are fed)."""
        done = counts(d.services).get(f"{stage}_in", 0.0)
        if not math.isnan(done) and sent[0] - done < low:
            feed(low)

    trials = []
    try:
        for k in size.replicas:
            while len(d.services) < k:
                i = len(d.services)
                extra: tuple[str, ...] = ("--execution-provider", "cpu", "--inference-threads", "1")
                if stage == "matcher":
                    copy = work / f"gallery-{i}"
                    if not copy.exists():
                        shutil.copytree(gallery, copy)
                    extra = ("--gallery", str(copy), "--episodes-data-dir", str(work / f"faust-{stage}-{i}"))
                    extra += ("--replica-id", f"r{i}")
                d.start(stage, *extra, key=f"{stage}#{i}", group=group)
            lags.phase = f"scale-out {stage} x{k}: joining"
            joined_at = time.monotonic()

            def steady(k: int = k) -> bool:
                top_up()
                if not all(s.ready() for s in d.services.values()):
                    return False
                members = reader.assignment(group, topic)
                if members is None:
                    return False
                owned = {p for held in members for p in held}
                owners = [held for held in members if held]
                return len(members) == k and len(owned) == partitions and len(owners) == min(k, partitions)

            joined = wait_for(steady, timeout_s=180, every_s=0.5)
            join_s = time.monotonic() - joined_at
            # warm: every replica has done two full batches since (a new batch shape makes
            # onnxruntime allocate, the first calls of a session are slow)
            start = {
                key: svc.metric("facestream_stage_messages_total", {"stage": stage})
                for key, svc in d.services.items()
            }

            def warm(start: dict[str, float] = start) -> bool:
                top_up()
                return all(
                    svc.metric("facestream_stage_messages_total", {"stage": stage}) >= start[key] + 64
                    for key, svc in d.services.items()
                )

            wait_for(warm, timeout_s=20, every_s=0.25)
            lags.phase = f"scale-out {stage} x{k}"
            before = read(d)
            broker_before = tree_cpu_s(broker_pid) if broker_pid else float("nan")
            end = time.monotonic() + size.scale_window_s
            while time.monotonic() < end:
                top_up()
                time.sleep(0.5)
            after = read(d)
            broker_after = tree_cpu_s(broker_pid) if broker_pid else float("nan")
            span = between(before, after)
            done = span["counts"].get(f"{stage}_in", 0.0)
            trials.append(
                {
                    "replicas": k,
                    "steady": joined,
                    "join_wall_s": round(join_s, 1),
                    "window_wall_s": span["wall_s"],
                    "messages": done,
                    "messages_per_s_wall": round(done / span["wall_s"], 2),
                    "cpu_s_per_message": round(span["services_cpu_s_total"] / max(1.0, done), 5),
                    "replica_cpu_s": span["services_cpu_s"],
                    "broker_cpu_s": round(broker_after - broker_before, 3),
                    "harness_cpu_s": span["harness_cpu_s"],
                    "machine_cpu_load": span["machine_cpu_load"],
                }
            )
    finally:
        lags.phase = f"scale-out {stage}: stopping"
        d.stop_services()
        producer.close()
        reader.close()
        lags.groups.pop(group, None)
    one = trials[0]["messages_per_s_wall"] if trials else 0.0
    for trial in trials:
        trial["speedup_vs_1"] = round(trial["messages_per_s_wall"] / one, 2) if one else None
    return {
        "input": INPUT[stage],
        "partitions": partitions,
        "unit": {"detector": "frames", "embedder": "faces", "matcher": "embeddings"}[stage],
        "messages_sent": sent[0],
        "trials": trials,
    }


# -- the part ----------------------------------------------------------------------------------


def sample_frames(cameras: Sequence[Camera], n: int) -> list[Frame]:
    """A uniform sample of every camera's frames (every frame is published equally often)."""
    every = [(c.camera_id, f) for c in cameras for f in c.frames]
    step = max(1, len(every) // max(1, n))
    return [frame_message(cam, f, 1_000_000 + i) for i, (cam, f) in enumerate(every[::step][:n])]


def run(ctx: Context) -> dict[str, Any]:
    size = SIZES[ctx.size]
    work = ctx.work / "pipeline"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result: dict[str, Any] = {"config": {**asdict(size), "size": ctx.size}}

    # set-up: broker and enrollment (subprocesses) meanwhile models and cameras here
    box: dict[str, Any] = {}

    def background() -> None:
        try:
            box["kafka"], box["broker_dir"] = start_broker(work, "scale-pipeline")
            enroll(work / "gallery", ctx.faces, "scale")
        except BaseException as exc:  # raised again on the part's thread
            box["error"] = exc

    setup = threading.Thread(target=background, name="setup")
    setup.start()
    models = ModelSettings(execution_provider="cpu", inference_threads=1)
    finder = build_finder(DetectorSettings(), models)
    embedder = build_embedder(EmbedderSettings(), models)
    sprites = cut_sprites(ctx.faces, finder, embedder, ENROLLED)
    mix = Mix()
    cameras = render_cameras(
        sprites, size.cameras, segments=size.segments, frames_per_segment=size.frames_per_segment, mix=mix
    )
    setup.join()
    if "error" in box:
        raise box["error"]
    frames = [f for c in cameras for f in c.frames]
    result["scene"] = {
        "frame_size": list(FRAME_SIZE),
        "mix": asdict(mix),
        "sprites": [{"photo": s.source, "identity": s.identity or "(not enrolled)"} for s in sprites],
        "frames_rendered": len(frames),
        "people_per_frame": round(statistics.fmean(len(f.people) for f in frames), 2),
        "share_with_enrolled": round(sum(any(p for p in f.people) for f in frames) / len(frames), 3),
        "share_with_nobody": round(sum(not f.people for f in frames) / len(frames), 3),
        "share_with_several": round(sum(len(f.people) > 1 for f in frames) / len(frames), 3),
        "share_with_unenrolled": round(sum(None in f.people for f in frames) / len(frames), 3),
        "jpeg_kb_mean": round(statistics.fmean(len(f.jpeg) for f in frames) / 1024, 1),
        "enrolled": list(ENROLLED),
        "episode_gap_s": EPISODE_GAP_S,
    }
    result["setup_wall_s"] = round(time.monotonic() - started, 1)

    sample = sample_frames(cameras, size.bare_frames)
    result["bare_models"] = models_cost(sample, finder, embedder)
    result["bare_models_thread_clock"] = models_cost(sample, finder, embedder, time.thread_time)
    staged, faces, embeddings = stages_cost(sample, finder, embedder)
    result["stages_in_process"] = staged

    kafka: KafkaSettings = box["kafka"]
    d = Deployment(work, kafka.model_copy(update={"topic_prefix": PREFIX}), broker_dir=box["broker_dir"])
    lags = LagRecorder(d.kafka, started)
    publisher: Publisher | None = None
    try:
        create_topics(d.kafka, PARTITIONS)
        lags.phase = "services starting"
        lags.start({f"{PREFIX}facestream-{s}": PREFIX + INPUT[s] for s in STAGES})
        lags.groups[f"{PREFIX}facestream-episodes"] = PREFIX + "hits"
        start_pipeline(d, work, work / "gallery")
        publisher = Publisher(d.kafka, cameras)

        lags.phase = "idle"
        a = read(d)
        time.sleep(3)
        idle = between(a, read(d))
        result["idle"] = {
            k: idle[k] for k in ("wall_s", "machine_cpu_load", "services_cpu_s", "broker_cpu_s")
        }

        lags.phase = "saturation"
        sat = saturation(d, publisher, size.saturation_frames)
        result["saturation"] = sat
        lags.phase = "after saturation"
        wait_for(lambda: pipeline_idle(d), timeout_s=30)

        rate, why = offered_rate(idle["machine_cpu_load"], sat["machine_cpu_load"], sat["frames_per_s_wall"])
        fps = max(0.2, min(25.0, rate / size.cameras))
        result["rate_choice"] = {
            "offered_frames_per_s": round(rate, 2),
            "fps_per_camera": round(fps, 3),
            "how": why,
        }
        latency, fps = latency_run(d, publisher, fps, size, lags, idle["machine_cpu_load"])
        result["latency"] = latency

        if size.profile_s > 0:
            lags.phase = "profile"
            under_load = BareUnderLoad(sample, finder, embedder)
            result["profile"] = profile_run(d, publisher, fps, size.profile_s, work, under_load)
        lags.phase = "pipeline stopping"
        publisher.close()
        publisher = None
        result["exit_codes"] = {k: v for k, v in d.stop_services().items()}
        lags.groups.clear()  # the pipeline's groups stand still from here

        payloads: dict[str, tuple[Codec[Any], list[Any]]] = {
            "detector": (codec.FRAMES, restamped([frame_message("x", f, 0) for f in frames], len(frames))),
            "embedder": (codec.FACES, restamped(faces, len(faces))),
            "matcher": (codec.EMBEDDINGS, restamped(embeddings, len(embeddings))),
        }
        result["scale_out"] = {}
        for stage in STAGES:
            coder, items = payloads[stage]
            result["scale_out"][stage] = scale_out(
                kafka,
                work,
                stage,
                [coder.encode(m) for m in items],
                size,
                work / "gallery",
                lags,
                d.broker_pid(),
            )
    finally:
        if publisher is not None:
            publisher.close()
        lags.stop()
        d.stop()
    result["lag_timeline"] = lags.samples
    result["ratios"] = ratios(result)
    return finite(result)


def finite(value: Any) -> Any:
    """NaN (a metric a service did not answer for) and infinities as None: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    """The goals' figures: CPU per face against the bare models, p99, scale-out speed-ups."""
    bare = r["bare_models"]["cpu_s_per_face"]
    out: dict[str, Any] = {"bare_cpu_s_per_face": bare}
    for phase in ("saturation", "latency"):
        if phase in r:
            out[f"{phase}_cpu_ratio"] = round(r[phase]["cpu_s_per_face"] / bare, 2)
            out[f"{phase}_cpu_ratio_with_broker"] = round(r[phase]["cpu_s_per_face_with_broker"] / bare, 2)
    hits = r.get("latency", {}).get("frame_to_visible_ms", {}).get("hits", {})
    out["frame_to_hit_p99_ms"] = hits.get("p99")
    out["machine_cpu_load_in_latency_run"] = r.get("latency", {}).get("machine_cpu_load")
    out["speedup_2_replicas"] = {
        stage: next((t["speedup_vs_1"] for t in s["trials"] if t["replicas"] == 2), None)
        for stage, s in r.get("scale_out", {}).items()
    }
    return out


# -- the report --------------------------------------------------------------------------------


def overhead_rows(
    result: dict[str, Any],
) -> tuple[list[tuple[str, dict[str, float]]], dict[str, float], float]:
    """The profiled window's CPU per service, by activity and by thread, adding up to each
    service's process tree CPU; with the faces of the window."""
    prof = result["profile"]
    window = prof["window"]
    faces = max(1.0, window["counts"].get("detector_out", 0.0))
    runner_thread = {"detector": "MainThread", "embedder": "MainThread", "matcher": "matcher-runner"}
    rows: dict[str, dict[str, float]] = {}
    # each process's own CPU over exactly its profiled window (all its threads, exited ones too)
    totals = {svc: sum(prof["services"].get(svc, {}).get("os_threads_cpu_s", {}).values()) for svc in STAGES}

    def add(label: str, svc: str, value: float) -> None:
        rows.setdefault(label, dict.fromkeys(STAGES, 0.0))[svc] += value

    for svc in STAGES:
        p = prof["services"].get(svc, {})
        if "activities_cpu_s" not in p:
            continue
        activities = p["activities_cpu_s"]
        for label, value in activities.items():
            add(label, svc, value)
        threads = dict(p["python_threads_cpu_s"])
        runner = threads.pop(runner_thread[svc], 0.0)
        add(
            "runner thread, outside the timed calls (loop, interpreter, GC)",
            svc,
            runner - sum(activities.values()),
        )
        for name, value in threads.items():
            label = (
                "Kafka: transaction calls' threads (begin, send offsets, commit; one thread each)"
                if name.startswith("transaction")
                else "episode step: faust event loop (matcher main thread)"
                if svc == "matcher" and name == "MainThread"
                else f"other Python thread: {name}"
            )
            add(label, svc, value)
        os_threads = p["os_threads_cpu_s"]
        add("Kafka: librdkafka's own threads", svc, os_threads.get("librdkafka threads", 0.0))
        add("gRPC threads", svc, os_threads.get("gRPC threads", 0.0))
        add(
            "native threads of libraries (OpenCV's worker pool, ...)",
            svc,
            os_threads.get("native threads of libraries (OpenCV's pool, ...)", 0.0),
        )
        accounted = sum(r[svc] for r in rows.values())
        add("not accounted above (exited native threads, clock ticks of 10 ms)", svc, totals[svc] - accounted)
    ordered = sorted(rows.items(), key=lambda kv: (not kv[0].startswith("model path"), -sum(kv[1].values())))
    return [(k, v) for k, v in ordered if abs(sum(v.values())) >= 0.0005], totals, faces


def kernel_lines(result: dict[str, Any]) -> list[str]:
    """System (kernel) CPU and minor page faults: the services' in the latency run, the bare pass's."""
    lat, bare = result["latency"], result["bare_models"]
    frames = max(1.0, lat["frames"])
    parts = []
    for svc, k in lat.get("kernel", {}).items():
        cpu = k.get("user_cpu_s", 0.0) + k.get("system_cpu_s", 0.0)
        share = k.get("system_cpu_s", 0.0) / cpu if cpu else 0.0
        parts.append(f"{svc} {share:.0%} system, {k.get('minor_faults', 0) / frames:.0f} faults/frame")
    if not parts:
        return []
    total = bare["total_cpu_s"] or 1.0
    return [
        "Kernel share of each service's CPU and its minor page faults (/proc, latency run): "
        + "; ".join(parts)
        + f". The bare pass in this process: {bare.get('system_cpu_s', 0.0) / total:.0%} system, "
        f"{bare.get('minor_faults', 0) / max(1, bare['frames']):.0f} faults/frame.",
        "",
    ]


def model_path_lines(result: dict[str, Any]) -> list[str]:
    """The model calls' cost per call in the services, against the same calls in this process,
    quiet and under the services' load (all on thread CPU clocks)."""
    prof = result["profile"]
    quiet, loaded = result["bare_models_thread_clock"], prof.get("bare_models_under_load", {})
    det, emb = prof["services"].get("detector", {}), prof["services"].get("embedder", {})
    if "activities_cpu_s" not in det or "activities_cpu_s" not in emb:
        return []

    def per_call(p: dict[str, Any], activity: str) -> float:
        return p["activities_cpu_s"].get(activity, 0.0) / max(1, p["activity_calls"].get(activity, 0))

    faces = max(1.0, prof["window"]["counts"].get("embedder_in", 0.0))
    rows = [
        (
            "JPEG decode, ms per frame",
            "jpeg_decode_cpu_s_per_frame",
            per_call(det, "model path: frame JPEG decode"),
        ),
        (
            "detect path, ms per frame",
            "detect_path_cpu_s_per_frame",
            per_call(det, "model path: detector, landmarks, align, quality"),
        ),
        (
            "embedder, ms per face",
            "embedder_cpu_s_per_face",
            emb["activities_cpu_s"].get("model path: embedder", 0.0) / faces,
        ),
    ]
    lines = [
        "The model calls themselves, on thread CPU clocks: in this process before the services started "
        f"({quiet['frames']} frames), in this process during the profiled window (one frame every 0.5 s, "
        f"{loaded.get('frames', 0)} frames), and inside the services in the window:",
        "",
        "| call | this process, quiet | this process, under the load | in the services |",
        "| --- | --- | --- | --- |",
    ]
    for label, key, service in rows:
        lines.append(
            f"| {label} | {_ms(quiet.get(key, 0.0))} | {_ms(loaded.get(key, 0.0))} | {_ms(service)} |"
        )
    return [*lines, ""]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _pct(p: dict[str, Any], key: str) -> str:
    return str(p.get(key, "-"))


def markdown(result: dict[str, Any]) -> list[str]:
    cfg, scene, bare = result["config"], result["scene"], result["bare_models"]
    staged, sat, lat, r = (
        result["stages_in_process"],
        result["saturation"],
        result["latency"],
        result["ratios"],
    )
    hits = lat["frame_to_visible_ms"].get("hits", {})
    lines = [
        "## Pipeline through a real broker",
        "",
        f"{lat['cameras']} synthetic cameras ({scene['frame_size'][0]}x{scene['frame_size'][1]} JPEG, "
        f"{scene['jpeg_kb_mean']} KB a frame; {scene['share_with_enrolled']:.0%} of frames show an "
        f"enrolled person, {scene['share_with_nobody']:.0%} nobody, {scene['share_with_several']:.0%} "
        f"several people, {scene['share_with_unenrolled']:.0%} someone not enrolled; "
        f"{len(scene['enrolled'])} people enrolled under one authorisation in a Milvus Lite gallery) "
        "publish Frame messages to `frames`, stamped with the wall time at publish. Detector, embedder "
        "and matcher run as separate `facestream` processes (CPU execution provider, one intra-op "
        "thread, batches of 32 within 50 ms, a Kafka transaction per batch) against a broker started "
        f"for the run; the episode gap is {scene['episode_gap_s']:g} s (30 s in production) so that "
        "candidates open often enough to time. "
        f"Size `{cfg['size']}`; the part took {result.get('part_wall_s', '?')} s (wall).",
        "",
        "### Goals",
        "",
        "| goal | target | measured |",
        "| --- | --- | --- |",
        f"| CPU per face, detector+embedder+matcher process trees (CPU clock), over the bare models "
        f"(CPU clock) | <= {CPU_RATIO_GOAL}x | {r.get('latency_cpu_ratio')}x in the latency run, "
        f"{r.get('saturation_cpu_ratio')}x at saturation; with the broker's CPU "
        f"{r.get('latency_cpu_ratio_with_broker')}x / {r.get('saturation_cpu_ratio_with_broker')}x |",
        f"| frame -> hit visible (read_committed), p99 (wall) at ~{TARGET_LOAD:.0%} machine CPU | "
        f"<= {LATENCY_GOAL_P99_MS:.0f} ms | {hits.get('p99')} ms at {lat['machine_cpu_load']:.0%} machine "
        f"CPU (CPU clock, /proc/stat; {lat['offered_frames_per_s']} frames/s offered) |",
        f"| 2 replicas of a stage vs 1 (wall throughput) | >= {SPEEDUP_GOAL}x | "
        + ", ".join(f"{k} {v}x" for k, v in r.get("speedup_2_replicas", {}).items())
        + f" (on {os_cores()} cores, shared with the broker) |",
        "",
        "### Throughput",
        "",
        "| run | stage | frames/s (wall) | faces/s (wall) | machine CPU (CPU clock) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage, figures in sat["per_stage"].items():
        lines.append(
            f"| saturation ({sat['frames']:.0f} frames in a burst) | {stage} | "
            f"{figures.get('frames_per_s_wall', '-')} | {figures.get('faces_per_s_wall', '-')} | "
            f"{sat['machine_cpu_load']:.0%} |"
        )
    lines += [
        f"| saturation | end to end | {sat['frames_per_s_wall']} | {sat['faces_per_s_wall']} | "
        f"{sat['machine_cpu_load']:.0%} |",
        f"| latency run ({lat['cameras']} cameras x {lat['fps_per_camera']} fps) | end to end | "
        f"{lat['frames_per_s_wall']} | {lat['faces_per_s_wall']} | {lat['machine_cpu_load']:.0%} |",
        "",
        f"Saturation per stage: each stage's count over the time until it had done its share of the burst "
        f"(the three share the machine). Rate for the latency run: {result['rate_choice']['how']}.",
        "",
        "### CPU per face",
        "",
        "| what | CPU s per face (CPU clock) | over the bare models |",
        "| --- | --- | --- |",
        f"| bare models in this process: JPEG decode + detect path + embedder, one face per call "
        f"({bare['frames']} frames, {bare['faces']} faces) | {bare['cpu_s_per_face']} | 1.00x |",
        f"| the stage objects in this process (DetectStage, EmbedStage in batches of 32; no Kafka) | "
        f"{staged['cpu_s_per_face']} | {staged['cpu_s_per_face'] / bare['cpu_s_per_face']:.2f}x |",
    ]
    for name, run_ in (("saturation", sat), (f"latency run, {lat['machine_cpu_load']:.0%} machine CPU", lat)):
        lines += [
            f"| services through the broker, {name} ({run_['faces']:.0f} faces) | {run_['cpu_s_per_face']} | "
            f"{run_['cpu_s_per_face'] / bare['cpu_s_per_face']:.2f}x |",
            f"| the same plus the broker's CPU | {run_['cpu_s_per_face_with_broker']} | "
            f"{run_['cpu_s_per_face_with_broker'] / bare['cpu_s_per_face']:.2f}x |",
        ]
    per_svc = lat["services_cpu_s"]
    faces = max(1.0, lat["faces"])
    lines += [
        "",
        "Latency run, per process tree (CPU clock): "
        + ", ".join(f"{k} {_ms(v / faces)} ms/face" for k, v in per_svc.items())
        + f"; broker {_ms(lat['broker_cpu_s'] / faces)} ms/face; this harness (cameras, watcher, sampling) "
        f"{_ms(lat['harness_cpu_s'] / faces)} ms/face. Bare: decode "
        f"{_ms(bare['jpeg_decode_cpu_s'] / max(1, bare['faces']))}, detect path "
        f"{_ms(bare['detect_path_cpu_s'] / max(1, bare['faces']))}, embedder "
        f"{_ms(bare['embedder_cpu_s_per_face'])} ms/face; the embedder in batches of 32 costs "
        f"{_ms(staged['embedder_cpu_s_per_face_in_batches'])} ms/face.",
        "",
        *kernel_lines(result),
    ]
    if "profile" in result:
        rows, totals, pfaces = overhead_rows(result)
        window = result["profile"]["window"]
        lines += [
            "### Where the CPU goes (profiled window)",
            "",
            f"Same load as the latency run, {window['wall_s']} s (wall), {pfaces:.0f} faces, "
            f"{result['profile']['cpu_s_per_face']} CPU s/face. Each service times its own calls on its "
            "threads' CPU clocks (cpuprofile.py: exclusive time of wrapped functions; each thread's clock; "
            "librdkafka's threads from /proc); rows add up to each process's CPU in its window. "
            "The `model path` rows are what the bare models do; everything else is the price of the service.",
            "",
            "| activity | detector | embedder | matcher | ms CPU per face | share of all |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        grand = sum(totals.values()) or 1.0
        for label, per in rows:
            total = sum(per.values())
            lines.append(
                f"| {label} | {per['detector']:.3f} | {per['embedder']:.3f} | {per['matcher']:.3f} | "
                f"{_ms(total / pfaces)} | {total / grand:.0%} |"
            )
        lines += [
            f"| **processes (CPU s)** | {totals['detector']:.3f} | {totals['embedder']:.3f} | "
            f"{totals['matcher']:.3f} | {_ms(grand / pfaces)} | 100% |",
            "",
            *model_path_lines(result),
        ]
    lines += [
        "### Latency (wall clock, ms; from capture to readable by a read_committed consumer)",
        "",
        f"{lat['cameras']} cameras x {lat['fps_per_camera']} fps = {lat['offered_frames_per_s']} frames/s "
        f"for {lat['wall_s']} s (wall) at {lat['machine_cpu_load']:.0%} machine CPU (CPU clock, /proc/stat, "
        f"every process on the machine); frames published at most {lat['publish_late_ms'].get('p99')} ms "
        "late (p99). Candidates open on the first hit of an episode.",
        "",
        "| frame -> visible in | n | p50 | p95 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for topic in ("faces", "embeddings", "hits", "matches"):
        p = lat["frame_to_visible_ms"].get(topic, {"n": 0})
        lines.append(
            f"| `{topic}` | {p['n']} | {_pct(p, 'p50')} | {_pct(p, 'p95')} | {_pct(p, 'p99')} | "
            f"{_pct(p, 'max')} |"
        )
    lines += ["", "| hop, frames with a hit | n | p50 | p95 | p99 |", "| --- | --- | --- | --- | --- |"]
    for hop, p in lat["hops_of_frames_with_hits_ms"].items():
        lines.append(f"| {hop} | {p['n']} | {_pct(p, 'p50')} | {_pct(p, 'p95')} | {_pct(p, 'p99')} |")
    lines += [
        "",
        "What a hop is made of, per stage in the same run (the services' own histograms): a batch is "
        "what one poll returned (up to 32 messages, waiting up to 50 ms for them); poll -> commit is "
        "decoding, the stage, producing, flushing and the transaction's commit (wall clock).",
        "",
        "| stage | batches | messages per batch | poll -> commit, mean ms (wall) |",
        "| --- | --- | --- | --- |",
    ]
    for stage, b in lat.get("batches", {}).items():
        lines.append(
            f"| {stage} | {b['batches']:.0f} | {b['mean_messages']} | {b['mean_poll_to_commit_ms']} |"
        )
    lines += [
        "",
        "### Scale-out per stage",
        "",
        "Each stage alone on its own topics (4 input partitions, fed evenly and kept backlogged), one "
        "consumer group grown to each replica count; measured in a steady window once every replica "
        "holds partitions.",
        "",
        "| stage | replicas | messages/s (wall) | x one replica | CPU s per message (CPU clock) | "
        "broker CPU s | machine CPU | window s (wall) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for stage, sc in result.get("scale_out", {}).items():
        for t in sc["trials"]:
            lines.append(
                f"| {stage} ({sc['unit']}) | {t['replicas']} | {t['messages_per_s_wall']} | "
                f"{t['speedup_vs_1']} | {t['cpu_s_per_message']} | {t['broker_cpu_s']} | "
                f"{t['machine_cpu_load']:.0%} | {t['window_wall_s']} |"
            )
    lines += scale_out_summary(result)
    lines += ["", "### Consumer lag", "", "Per group, messages (offsets, so transaction markers count):", ""]
    lines += ["| group | max | last |", "| --- | --- | --- |"]
    for group, series in lag_series(result).items():
        values = [v for _, v in series if v is not None]
        lines.append(f"| {group} | {max(values, default=0)} | {values[-1] if values else '-'} |")
    lines.append("")
    return lines


def scale_out_summary(result: dict[str, Any]) -> list[str]:
    """What the trials say limited them: the machine's CPU, or not."""
    lines = []
    for stage, sc in result.get("scale_out", {}).items():
        trials = sc["trials"]
        if len(trials) < 2:
            continue
        one, two = trials[0], trials[1]
        cpu_change = (
            two["cpu_s_per_message"] / one["cpu_s_per_message"] - 1 if one["cpu_s_per_message"] else 0.0
        )
        lines.append(
            f"- {stage}: one replica kept the machine {one['machine_cpu_load']:.0%} busy, two "
            f"{two['machine_cpu_load']:.0%} (every process: replicas, broker, this harness); CPU per message "
            f"changed {cpu_change:+.0%} from one to two replicas."
        )
    if lines:
        lines = [
            "",
            "A replica is single-threaded (one intra-op thread), so K replicas need K cores beside the "
            f"broker's; this machine has {os_cores()}. Where the machine is near 100% and CPU per "
            "message holds steady, the cores are the limit, not Kafka or the partitioning:",
            "",
            *lines,
        ]
    return lines


def os_cores() -> int:
    return os.cpu_count() or 0


def lag_series(result: dict[str, Any]) -> dict[str, list[tuple[float, int | None]]]:
    series: dict[str, list[tuple[float, int | None]]] = {}
    for sample in result.get("lag_timeline", []):
        for group, value in sample["lag"].items():
            series.setdefault(group, []).append((sample["t_wall_s"], value))
    return series


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    series_by_group = lag_series(result)
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    for ax, scale in zip(axes, (False, True), strict=True):
        for group, series in series_by_group.items():
            if group.startswith("scale-") != scale:
                continue
            xs = [t for t, v in series if v is not None]
            ys = [v for _, v in series if v is not None]
            ax.plot(xs, ys, label=group, linewidth=1.2)
        ax.set_ylabel("lag, messages (offsets)")
        ax.legend(fontsize=7, loc="upper left")
    phases: list[tuple[str, float]] = []
    for sample in result.get("lag_timeline", []):
        if not phases or phases[-1][0] != sample["phase"]:
            phases.append((sample["phase"], sample["t_wall_s"]))
    for ax in axes:
        for _, t in phases:
            ax.axvline(t, color="grey", linewidth=0.5, linestyle=":")
    for name, t in phases:
        axes[0].text(
            t, 1.01, name, transform=axes[0].get_xaxis_transform(), fontsize=6, rotation=60, color="dimgrey"
        )
    axes[1].set_title("Scale-out trials: one group per stage, kept backlogged", fontsize=9, loc="right")
    axes[1].set_xlabel("time since the part started, s (wall clock)")
    fig.suptitle("Consumer lag per group, sampled about every second (wall clock)")
    fig.tight_layout()
    path = out / "pipeline_lag.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    most = 1
    for stage, sc in result.get("scale_out", {}).items():
        ks = [t["replicas"] for t in sc["trials"]]
        most = max([most, *ks])
        speedups = [t["speedup_vs_1"] or 0 for t in sc["trials"]]
        left.plot(ks, speedups, marker="o", label=f"{stage} ({sc['unit']})")
    left.plot([1, most], [1, most], color="grey", linestyle=":", label="linear")
    left.scatter([2], [SPEEDUP_GOAL], marker="_", s=400, color="tab:red", label=f"goal {SPEEDUP_GOAL}x at 2")
    left.set_xlabel("replicas in the group")
    left.set_ylabel("throughput over one replica's (wall clock)")
    left.set_title(f"Scale-out per stage on {os_cores()} cores (wall clock)")
    left.legend(fontsize=8)
    lat = result["latency"]
    for topic in ("hits", "matches"):
        values = sorted(latency_values(result, topic))
        if values:
            middle.plot(
                values, [(i + 1) / len(values) for i in range(len(values))], label=f"frame -> {topic}"
            )
    middle.axvline(
        LATENCY_GOAL_P99_MS, color="tab:red", linestyle="--", label=f"{LATENCY_GOAL_P99_MS:.0f} ms goal (p99)"
    )
    middle.axhline(0.99, color="grey", linewidth=0.5)
    middle.set_xlabel("capture -> readable (read_committed), ms (wall clock)")
    middle.set_ylabel("share of records")
    middle.set_title(f"Latency CDF at {lat['machine_cpu_load']:.0%} machine CPU (CPU clock)")
    middle.legend(fontsize=8)
    series = lat.get("latency_series", [])
    right.scatter([t / 1000 for t, _ in series], [v for _, v in series], s=6)
    right.set_xlabel("capture time in the latency run, s (wall clock)")
    right.set_ylabel("frame -> hit readable, ms (wall clock)")
    right.set_title(f"Frame -> hit over the run ({lat['offered_frames_per_s']} frames/s offered)")
    fig.tight_layout()
    path = out / "pipeline_throughput_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def latency_values(result: dict[str, Any], topic: str) -> list[float]:
    """The raw per-record latencies kept for plots (hits only), else the percentiles' points."""
    lat = result["latency"]
    if topic == "hits":
        return [v for _, v in lat.get("latency_series", [])]
    return [float(v) for v in lat.get("matches_series", [])]
