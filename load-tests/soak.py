"""facestream soak run: many cameras through the real broker and the real services for a long time,
watching memory and consumer lag. Not part of CI; docs/soak.md says how to run it and what it found.

    .venv/bin/python load-tests/soak.py [--cameras 20] [--minutes 30] [--fps 1] [--sample-s 5]
                                        [--bootstrap-servers HOST:PORT] [--out DIR]

What it does: makes camera videos from ../shared/data/faces (each a few people with gaps, so
episodes open and close), enrolls some of those people under an authorisation, starts a broker
(scripts/kafka.sh, unless --bootstrap-servers is given), creates the topics, starts the
frame-sampler (looping the videos in real time), detector, embedder and matcher as separate
processes, publishes N cameras, and every --sample-s seconds records each service's RSS (its
whole process tree), every consumer group's lag, and the pipeline's counters.

Pass/fail, written with the figures to DIR/soak-<timestamp>.json and .md (default DIR:
load-tests/reports):
- memory flat: for every service, the mean RSS of the last third of the run is within
  --memory-tolerance (default 10%, plus 25 MB for small processes) of the second third's mean;
  the first third is warm-up (models, gallery, caches);
- lag bounded: no group's lag ever exceeds --max-lag (default: 60 s of frames, cameras x fps x 60),
  and the last third's mean lag is no more than the second third's plus 10 s of frames (not growing);
- the services stayed up, and matches were produced.
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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scalelab.clocks import tree_rss_mb
from scalelab.cluster import (
    REPO,
    Deployment,
    LagReader,
    create_topics,
    enroll,
    start_broker,
)

from facestream.sample import make_camera_video
from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer

FACES = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))
PREFIX = "soak."
SERVICES = ("frame-sampler", "detector", "embedder", "matcher")
GROUPS = {  # group -> the topic it consumes
    f"{PREFIX}facestream-detector": "frames",
    f"{PREFIX}facestream-embedder": "faces",
    f"{PREFIX}facestream-matcher": "embeddings",
    f"{PREFIX}facestream-episodes": "hits",
}
# The cameras' scenes: people who are enrolled and people who are not, with gaps between them.
SCENES = (
    ("probe/obama.jpg", "probe/kit_harington_unenrolled.jpg", "scenes/two_people.jpg"),
    ("scenes/kit_harington_and_rose_leslie.jpg", "probe/alex_lacamoire.jpg"),
    ("scenes/obama_and_biden.jpg", "scenes/obama_720p.jpg"),
    ("probe/kit_harington_unenrolled.jpg", "enroll/biden_1.jpg", "enroll/rose_leslie_2.jpg"),
)


# -- set-up ------------------------------------------------------------------------------------


def videos(work: Path) -> list[Path]:
    out = []
    for i, scene in enumerate(SCENES):
        photos = [FACES / p for p in scene]
        out.append(make_camera_video(photos, work / f"scene-{i}.mp4", seconds_each=4, gap_seconds=4))
    return out


def publish_cameras(kafka: KafkaSettings, clips: Sequence[Path], count: int, fps: float) -> None:
    producer = KafkaProducer(kafka)
    for n in range(count):
        camera_id = f"soak-{n:03d}"
        camera = {"camera_id": camera_id, "url": str(clips[n % len(clips)]), "fps": fps}
        producer.produce(PREFIX + "cameras", json.dumps(camera).encode(), key=camera_id.encode())
    producer.flush(30)
    producer.close()


# -- measuring and judging ---------------------------------------------------------------------


def sample(d: Deployment, reader: LagReader, started: float) -> dict[str, Any]:
    lag = reader.lags({group: PREFIX + topic for group, topic in GROUPS.items()})
    s = d.services
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": {name: tree_rss_mb(svc.proc.pid) for name, svc in s.items()},
        "alive": {name: svc.proc.poll() is None for name, svc in s.items()},
        "lag": lag,
        "frames_published": s["frame-sampler"].metric("facestream_frames_published_total"),
        "faces": s["detector"].metric("facestream_stage_outputs_total"),
        "embeddings": s["embedder"].metric("facestream_stage_outputs_total"),
        "hits": s["matcher"].metric("facestream_hits_total"),
        "candidates": s["matcher"].metric("facestream_candidates_total"),
        "dead_letters": sum(svc.metric("facestream_dlq_messages_total") for svc in s.values()),
    }


def thirds(values: Sequence[float]) -> tuple[float, float]:
    """Means of the second and last thirds (the first is warm-up)."""
    n = len(values)
    second, last = values[n // 3 : 2 * n // 3], values[2 * n // 3 :]
    return (statistics.fmean(second) if second else 0.0, statistics.fmean(last) if last else 0.0)


def judge(samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    frames_per_10s = args.cameras * args.fps * 10
    max_lag = args.max_lag or int(args.cameras * args.fps * 60)
    memory: dict[str, dict[str, Any]] = {}
    for name in SERVICES:
        series = [s["rss_mb"][name] for s in samples]
        second, last = thirds(series)
        flat = last <= second * (1 + args.memory_tolerance) + 25
        memory[name] = {
            "start_mb": series[0],
            "peak_mb": max(series),
            "second_third_mean_mb": round(second, 1),
            "last_third_mean_mb": round(last, 1),
            "growth_pct": round(100 * (last - second) / second, 1) if second else 0.0,
            "flat": flat,
        }
    lag: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        series = [s["lag"][group] for s in samples if s["lag"][group] is not None]
        second, last = thirds(series) if series else (0.0, 0.0)
        lag[group] = {
            "max": max(series, default=0),
            "final": series[-1] if series else None,
            "second_third_mean": round(second, 1),
            "last_third_mean": round(last, 1),
            "bounded": bool(series) and max(series) <= max_lag and last <= second + frames_per_10s,
        }
    alive = all(all(s["alive"].values()) for s in samples)
    final = samples[-1]
    produced = final["candidates"] > 0 and final["hits"] > 0
    return {
        "memory": memory,
        "lag": lag,
        "max_lag_allowed": max_lag,
        "services_stayed_up": alive,
        "matches_produced": produced,
        "passed": alive
        and produced
        and all(m["flat"] for m in memory.values())
        and all(g["bounded"] for g in lag.values()),
    }


def markdown(report: dict[str, Any]) -> str:
    v, cfg = report["verdict"], report["config"]
    last = report["samples"][-1]
    lines = [
        f"# facestream soak run, {report['at']}: {'PASSED' if v['passed'] else 'FAILED'}",
        "",
        f"Machine: {report['machine']}",
        "",
        f"{cfg['cameras']} cameras at {cfg['fps']} fps for {cfg['minutes']} min, sampled every "
        f"{cfg['sample_s']} s ({len(report['samples'])} samples). "
        f"Totals: {last['frames_published']:.0f} frames, "
        f"{last['faces']:.0f} faces, {last['embeddings']:.0f} embeddings, {last['hits']:.0f} hits, "
        f"{last['candidates']:.0f} candidates, {last['dead_letters']:.0f} dead letters.",
        "",
        "## Memory (RSS of each service's process tree, MB)",
        "",
        "| service | start | peak | 2nd third mean | last third mean | growth | flat |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in v["memory"].items():
        lines.append(
            f"| {name} | {m['start_mb']} | {m['peak_mb']} | {m['second_third_mean_mb']} | "
            f"{m['last_third_mean_mb']} | {m['growth_pct']}% | {'yes' if m['flat'] else 'NO'} |"
        )
    lines += [
        "",
        f"## Consumer lag (messages; allowed at most {v['max_lag_allowed']})",
        "",
        "| group | max | final | 2nd third mean | last third mean | bounded |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for group, g in v["lag"].items():
        lines.append(
            f"| {group} | {g['max']} | {g['final']} | {g['second_third_mean']} | {g['last_third_mean']} | "
            f"{'yes' if g['bounded'] else 'NO'} |"
        )
    lines += [
        "",
        f"Services stayed up: {'yes' if v['services_stayed_up'] else 'NO'}; "
        f"matches produced: {'yes' if v['matches_produced'] else 'NO'}.",
        "",
        "## Over time",
        "",
        "| t (s) | " + " | ".join(f"{n} MB" for n in SERVICES) + " | lag detector | lag matcher | frames |",
        "| --- " * (len(SERVICES) + 4) + "|",
    ]
    step = max(1, len(report["samples"]) // 30)
    for s in report["samples"][::step]:
        lag = s["lag"]
        lines.append(
            f"| {s['t_s']} | "
            + " | ".join(str(s["rss_mb"][n]) for n in SERVICES)
            + f" | {lag[f'{PREFIX}facestream-detector']} | {lag[f'{PREFIX}facestream-matcher']} | "
            f"{s['frames_published']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate of every camera")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between measurements")
    parser.add_argument("--memory-tolerance", type=float, default=0.10)
    parser.add_argument("--max-lag", type=int, default=0, help="default: 60 s of frames")
    parser.add_argument("--bootstrap-servers", default="", help="use this broker instead of starting one")
    parser.add_argument("--out", type=Path, default=REPO / "load-tests" / "reports")
    args = parser.parse_args(argv)
    if not (FACES / "enroll").is_dir():
        parser.error(f"test photos not found at {FACES}; set FACESTREAM_FACES")
    if args.cameras < 1 or args.minutes <= 0 or args.sample_s <= 0:
        parser.error("--cameras, --minutes and --sample-s must be positive")

    with tempfile.TemporaryDirectory(prefix="facestream-soak-") as tmp:
        work = Path(tmp)
        if args.bootstrap_servers:
            kafka, broker_dir = (
                KafkaSettings(bootstrap_servers=args.bootstrap_servers, client_id="soak"),
                None,
            )
        else:
            kafka, broker_dir = start_broker(work, "soak")
        d = Deployment(work, kafka.model_copy(update={"topic_prefix": PREFIX}), broker_dir=broker_dir)
        reader: LagReader | None = None
        try:
            partitions = {"cameras": 4, "frames": 4, "faces": 4, "embeddings": 4, "hits": 2, "matches": 2}
            create_topics(d.kafka, partitions)
            gallery = work / "gallery"
            enroll(gallery, FACES, "soak")
            clips = videos(work)
            d.start("detector", "--execution-provider", "cpu")
            d.start("embedder", "--execution-provider", "cpu")
            d.start("matcher", "--gallery", str(gallery), "--episodes-data-dir", str(work / "faust"))
            d.start("frame-sampler", "--realtime-files", "--loop-files", "--fps", str(args.fps))
            for service in d.services.values():
                service.metrics_port()
            publish_cameras(d.kafka, clips, args.cameras, args.fps)
            reader = LagReader(d.kafka)
            started = time.monotonic()
            samples = []
            print(f"soak: {args.cameras} cameras for {args.minutes} min; logs in {work}", flush=True)
            while time.monotonic() - started < args.minutes * 60:
                samples.append(sample(d, reader, started))
                s = samples[-1]
                print(f"soak: t={s['t_s']}s rss={s['rss_mb']} lag={s['lag']}", flush=True)
                if not all(s["alive"].values()):
                    break
                time.sleep(args.sample_s)
        finally:
            if reader is not None:
                reader.close()  # before the broker stops
            codes = d.stop()
        report: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "config": {
                "cameras": args.cameras,
                "minutes": args.minutes,
                "fps": args.fps,
                "sample_s": args.sample_s,
                "memory_tolerance": args.memory_tolerance,
            },
            "exit_codes": codes,
            "samples": samples,
        }
        report["verdict"] = judge(samples, args)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"soak-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"soak-{stamp}.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    return 0 if report["verdict"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
