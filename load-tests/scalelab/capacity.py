"""The capacity model: replicas, cores, partitions, Kafka MB/s and gallery size for a city.

Why a model and not a measurement: no machine here has the cores of a 1,000-camera city. So
the report turns what this run measured per unit of work (CPU seconds per frame, per face, per
camera-second, per gallery search, bytes per record) into what N cameras need, and says what
the model assumes. It is linear in cameras: it holds as far as adding a replica adds its
throughput, which the pipeline part's scale-out measures (and on a 2-core machine cannot show
beyond two replicas: see its figures).

Every input is read from this run's other parts, except the record sizes, which this part
measures itself on one real 720p frame through the real stages and codecs, and the assumptions
below, which are stated in the report next to the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2

from facestream import codec
from facestream.messages import Frame, FrameRef
from facestream.settings import DetectorSettings, EmbedderSettings, ModelSettings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models
from scalelab import Context

CAMERAS = (1_000, 10_000, 100_000)
FPS = 1.0
FACES_PER_FRAME = 0.5
"""Assumed faces that pass the quality gates per sampled frame, city-wide (a busy entrance has
several, a street at night none); the embedder and matcher rows scale with it."""
TARGET_UTILISATION = 0.7
"""Replicas are sized to run at this share of their CPU, leaving room for bursts and rebalances."""
CORES_PER_STAGE_REPLICA = 1.0
"""Detector, embedder and matcher replicas each run one inference thread (ModelSettings.inference_threads)."""
CORES_PER_SAMPLER_REPLICA = 2.0
"""The frame-sampler runs a thread per camera: a replica may use its whole CPU limit (chart: 2)."""
REPLICATION = 3
"""Kafka replication factor in production (the measurements ran one broker, factor 1)."""
PHOTOS_PER_IDENTITY = 2
WATCHLISTS = (10_000, 100_000, 1_000_000)
SEARCH_BATCH = 32


def _record_sizes(ctx: Context) -> dict[str, int]:
    """Bytes of one real frame, face and embedding record on the wire (Avro, as produced)."""
    models = ModelSettings(execution_provider="cpu")
    fetch_builtin_models(models.model_dir)
    finder = build_finder(DetectorSettings(), models)
    embedder = build_embedder(EmbedderSettings(), models)
    image = cv2.imread(str(ctx.faces / "scenes" / "obama_720p.jpg"))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("cannot encode the 720p scene")
    ref = FrameRef("cam-1", "cam-1@0", 0, "capacity")
    frame = Frame(ref, image.shape[1], image.shape[0], jpeg.tobytes())
    faces_out = DetectStage(finder, max_frame_pixels=40_000_000, thumbnail_px=128).process([frame])[0]
    if not isinstance(faces_out, list) or not faces_out:
        raise RuntimeError("no face found in the 720p scene")
    face = faces_out[0]
    embeddings_out = EmbedStage(embedder).process([face])[0]
    if not isinstance(embeddings_out, list) or not embeddings_out:
        raise RuntimeError("no embedding made")
    return {
        "frame_bytes": len(codec.FRAMES.encode(frame)),
        "face_bytes": len(codec.FACES.encode(face)),
        "embedding_bytes": len(codec.EMBEDDINGS.encode(embeddings_out[0])),
    }


def _unit_costs(parts: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per unit of work from the other parts (their CPU clocks), and where each came from."""
    pipeline, sampler, gallery = parts.get("pipeline", {}), parts.get("sampler", {}), parts.get("gallery", {})
    for name, part in (("pipeline", pipeline), ("sampler", sampler)):
        if not part or "error" in part:
            raise RuntimeError(f"the capacity model needs the {name} part's figures (run both in one report)")
    sat = pipeline["saturation"]
    cpu = sat["services_cpu_s"]
    frames, faces = float(sat["frames"]), float(sat["faces"])
    live = [r for r in sampler["rows"] if r.get("mode") == "live" and r.get("sampled_fps") == FPS]
    rows = live or [r for r in sampler["rows"] if r.get("sampled_fps") == FPS]
    worst = max(rows, key=lambda r: r["cpu_s_per_camera_s"])
    costs: dict[str, Any] = {
        "detector_cpu_s_per_frame": cpu["detector"] / frames,
        "embedder_cpu_s_per_face": cpu["embedder"] / faces,
        "matcher_cpu_s_per_face": cpu["matcher"] / faces,
        "broker_cpu_s_per_frame": sat["broker_cpu_s"] / frames,
        "sampler_cpu_s_per_camera_s": worst["cpu_s_per_camera_s"],
        "sampler_row": f"{worst['mode']}, GOP {worst['gop_s']} s, {worst['sampled_fps']} fps",
        "measured_faces_per_frame": faces / frames,
        "source": "pipeline saturation phase (process-tree CPU clocks) and sampler part (process CPU clock)",
    }
    summary = gallery.get("summary") if isinstance(gallery, dict) and "error" not in gallery else None
    if summary and summary.get("server_cpu_ms_per_b32") and summary.get("rows"):
        costs["gallery_rows_measured"] = summary["rows"]
        costs["gallery_cpu_s_per_b32"] = summary["server_cpu_ms_per_b32"] / 1000
        costs["gallery_b32_p99_ms"] = summary.get("b32_p99_ms")
        # Memory per row from the slope between the HNSW server's smallest and largest runs: the
        # server's own footprint (etcd, query node) does not grow with rows.
        hnsw = sorted(
            (r for r in gallery.get("runs", []) if r.get("backend") == "server-hnsw" and r.get("rss_mb")),
            key=lambda r: r["rows"],
        )
        if len(hnsw) >= 2 and hnsw[-1]["rows"] > hnsw[0]["rows"]:
            slope = (hnsw[-1]["rss_mb"] - hnsw[0]["rss_mb"]) / (hnsw[-1]["rows"] - hnsw[0]["rows"])
            costs["gallery_mb_per_row"] = max(slope, 0.0)
            costs["gallery_base_mb"] = hnsw[0]["rss_mb"] - slope * hnsw[0]["rows"]
    return costs


def _cores_per_replica(stage: str) -> float:
    return CORES_PER_SAMPLER_REPLICA if stage == "frame-sampler" else CORES_PER_STAGE_REPLICA


def _replicas(cores: float, per_replica: float) -> int:
    return max(1, math.ceil(cores / (per_replica * TARGET_UTILISATION)))


def _partitions(replicas: int) -> int:
    """Room to scale to 1.5x the sized replicas, in sixes (so 2, 3 and 6 replicas divide them)."""
    return max(12, 6 * math.ceil(1.5 * replicas / 6))


def _row(cameras: int, costs: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    frames_s = cameras * FPS
    faces_s = frames_s * FACES_PER_FRAME
    cores = {
        "frame-sampler": cameras * costs["sampler_cpu_s_per_camera_s"],
        "detector": frames_s * costs["detector_cpu_s_per_frame"],
        "embedder": faces_s * costs["embedder_cpu_s_per_face"],
        "matcher": faces_s * costs["matcher_cpu_s_per_face"],
    }
    replicas = {name: _replicas(c, _cores_per_replica(name)) for name, c in cores.items()}
    produced_mb_s = (
        frames_s * sizes["frame_bytes"] + faces_s * (sizes["face_bytes"] + sizes["embedding_bytes"])
    ) / 1e6
    row: dict[str, Any] = {
        "cameras": cameras,
        "frames_per_s": frames_s,
        "faces_per_s": faces_s,
        "cores": {k: round(v, 1) for k, v in cores.items()},
        "replicas": replicas,
        "pipeline_cores_requested": round(sum(r * _cores_per_replica(n) for n, r in replicas.items()), 1),
        "partitions": {
            "frames": _partitions(replicas["detector"]),
            "faces": _partitions(replicas["embedder"]),
            "embeddings": _partitions(replicas["matcher"]),
            "cameras": _partitions(replicas["frame-sampler"]),
        },
        "kafka_produced_mb_s": round(produced_mb_s, 1),
        "kafka_written_mb_s_with_replication": round(produced_mb_s * REPLICATION, 1),
        "kafka_broker_cores_measured_rf1": round(frames_s * costs["broker_cpu_s_per_frame"], 1),
        "frames_retained_gb_10min_rf": round(frames_s * sizes["frame_bytes"] * 600 * REPLICATION / 1e9, 1),
    }
    if "gallery_cpu_s_per_b32" in costs:
        row["gallery_search_cores_at_measured_size"] = round(
            faces_s / SEARCH_BATCH * costs["gallery_cpu_s_per_b32"], 2
        )
    return row


def run(ctx: Context, parts: dict[str, Any]) -> dict[str, Any]:
    costs = _unit_costs(parts)
    sizes = _record_sizes(ctx)
    gallery_rows = []
    if "gallery_mb_per_row" in costs:
        for identities in WATCHLISTS:
            rows = identities * PHOTOS_PER_IDENTITY
            mb = costs["gallery_base_mb"] + rows * costs["gallery_mb_per_row"]
            gallery_rows.append({"identities": identities, "rows": rows, "server_gb": round(mb / 1024, 1)})
    scale_out = {
        stage: {str(t["replicas"]): t.get("speedup_vs_1") for t in trial.get("trials", [])}
        for stage, trial in (parts["pipeline"].get("scale_out") or {}).items()
        if isinstance(trial, dict)
    }
    return {
        "assumptions": {
            "fps_per_camera": FPS,
            "faces_per_frame": FACES_PER_FRAME,
            "target_utilisation": TARGET_UTILISATION,
            "cores_per_stage_replica": CORES_PER_STAGE_REPLICA,
            "cores_per_sampler_replica": CORES_PER_SAMPLER_REPLICA,
            "kafka_replication": REPLICATION,
            "photos_per_identity": PHOTOS_PER_IDENTITY,
            "search_batch": SEARCH_BATCH,
        },
        "unit_costs": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in costs.items()},
        "record_bytes": sizes,
        "rows": [_row(c, costs, sizes) for c in CAMERAS],
        "gallery": gallery_rows,
        "measured_scale_out": scale_out,
    }


def markdown(result: dict[str, Any]) -> list[str]:
    a, c, b = result["assumptions"], result["unit_costs"], result["record_bytes"]
    lines = [
        "## Capacity model (derived from this run's measurements)",
        "",
        f"Cameras sampled at {a['fps_per_camera']:g} fps; an assumed {a['faces_per_frame']} usable faces per "
        f"frame city-wide (the synthetic cameras had {c['measured_faces_per_frame']:.2f}); replicas sized "
        f"to {a['target_utilisation']:.0%} of their CPU, {a['cores_per_stage_replica']:g} core per "
        f"detector/embedder/matcher replica (one inference thread), {a['cores_per_sampler_replica']:g} per "
        f"frame-sampler replica; Kafka replication factor {a['kafka_replication']}. Unit costs from CPU "
        f"clocks in this run: detector {1000 * c['detector_cpu_s_per_frame']:.1f} ms per frame, embedder "
        f"{1000 * c['embedder_cpu_s_per_face']:.1f} ms per face, matcher (with episodes) "
        f"{1000 * c['matcher_cpu_s_per_face']:.1f} ms per face, broker "
        f"{1000 * c['broker_cpu_s_per_frame']:.1f} ms per frame (one broker, factor 1), frame-sampler "
        f"{c['sampler_cpu_s_per_camera_s']:.3f} s per camera-second ({c['sampler_row']}). Record sizes "
        f"measured on a real 720p frame: frame {b['frame_bytes']:,} B, face {b['face_bytes']:,} B, "
        f"embedding {b['embedding_bytes']:,} B.",
        "",
        "| cameras | frames/s | faces/s | cores: sampler / detector / embedder / matcher | replicas: "
        "sampler / detector / embedder / matcher | cores requested | partitions: frames / faces / "
        "embeddings | Kafka MB/s produced (x RF written) | broker CPU, cores (RF 1, measured) | frames "
        "retained, GB (10 min, x RF) |",
        "| ---: | ---: | ---: | --- | --- | ---: | --- | --- | ---: | ---: |",
    ]
    order = ("frame-sampler", "detector", "embedder", "matcher")
    for r in result["rows"]:
        p = r["partitions"]
        lines.append(
            f"| {r['cameras']:,} | {r['frames_per_s']:,.0f} | {r['faces_per_s']:,.0f} | "
            + " / ".join(f"{r['cores'][n]:,}" for n in order)
            + " | "
            + " / ".join(f"{r['replicas'][n]:,}" for n in order)
            + f" | {r['pipeline_cores_requested']:,} | {p['frames']} / {p['faces']} / {p['embeddings']} | "
            f"{r['kafka_produced_mb_s']:,} ({r['kafka_written_mb_s_with_replication']:,}) | "
            f"{r['kafka_broker_cores_measured_rf1']:,} | {r['frames_retained_gb_10min_rf']:,} |"
        )
    lines += ["", "Chart values for each row (helm/facestream/values.yaml):", ""]
    for r in result["rows"]:
        rep, p = r["replicas"], r["partitions"]
        lines.append(
            f"- {r['cameras']:,} cameras: `frameSampler.autoscaling.maxReplicas={p['cameras']}`, "
            f"`detector.autoscaling.maxReplicas={p['frames']}` (sized {rep['detector']}), "
            f"`embedder.autoscaling.maxReplicas={p['faces']}` (sized {rep['embedder']}), "
            f"`matcher.autoscaling.maxReplicas={p['embeddings']}` (sized {rep['matcher']}), "
            f"`topics.catalogue.cameras.partitions={p['cameras']}`, `frames.partitions={p['frames']}`, "
            f"`faces.partitions={p['faces']}`, `embeddings.partitions={p['embeddings']}`"
        )
    if result["gallery"]:
        lines += [
            "",
            f"Gallery (Milvus server, HNSW; memory from the gallery part's server RSS, "
            f"{c['gallery_mb_per_row'] * 1024:.1f} KB per row above a {c['gallery_base_mb']:.0f} MB base, "
            f"{a['photos_per_identity']} photos per identity): "
            + "; ".join(f"{g['identities']:,} identities ≈ {g['server_gb']} GB" for g in result["gallery"])
            + f". Milvus search CPU (CPU clock of the server) at {c['gallery_rows_measured']:,} rows, "
            f"in batches of {a['search_batch']}: "
            + "; ".join(
                f"{r['cameras']:,} cameras ≈ {r['gallery_search_cores_at_measured_size']} cores"
                for r in result["rows"]
                if "gallery_search_cores_at_measured_size" in r
            )
            + ".",
        ]
    lines += [
        "",
        "The model is linear: each replica adds its measured throughput. This run's scale-out "
        "(pipeline part, wall clock) measured speed-ups of "
        + "; ".join(
            f"{stage} {', '.join(f'{k} replicas {v}x' for k, v in s.items())}"
            for stage, s in result["measured_scale_out"].items()
            if s
        )
        + " on this machine's cores; where that is below linear, the cores (shared with the broker), "
        "not the stages, were the limit — the pipeline part says which.",
        "",
    ]
    return lines


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    return []
