"""`facestream identify`: the embedded pipeline over files, folders and streams.

A search (role officer) under the match policy: only entries of authorisations in force at
each frame's time and in scope for its camera (sources are in zone `--zone`, default
"default") can match, and nothing matches under a suspension rule. Each candidate is audited
(`candidate.open`) and the run as a whole (`identify.run`: sources, cameras, period,
authorisations checked, counts). Faces that match nothing leave no trace.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from facestream.accountability.roles import add_actor_flag
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import add_settings, describe, settings_from
from facestream.commands.output import candidate_json, emit
from facestream.errors import ConfigError
from facestream.settings import (
    DetectorSettings,
    EmbedderSettings,
    GallerySettings,
    MatcherSettings,
    ModelSettings,
    SamplerSettings,
)

log = logging.getLogger("facestream.identify")


def _zone(text: str) -> str:
    if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", text):
        raise argparse.ArgumentTypeError(f"zone {text!r}: 1-64 letters, digits, . _ -")
    return text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "identify",
        help="run the embedded pipeline over sources and print candidate matches as JSON",
        description="Run every stage in this process (in-process transport, Milvus Lite) over the "
        "sources until they end; print one JSON object per candidate match on stdout.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="video file, image, folder of images, rtsp:// or http(s):// stream",
    )
    p.add_argument(
        "--zone",
        type=_zone,
        default="default",
        metavar="ZONE",
        help="zone (camera group) of the sources, for authorisation scopes and suspension rules",
    )
    add_actor_flag(p)
    add_settings(
        p,
        GallerySettings,
        AccountabilitySettings,
        MatcherSettings,
        SamplerSettings,
        DetectorSettings,
        EmbedderSettings,
        ModelSettings,
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.clock import now_ms
    from facestream.accountability.policy import AccountablePolicy
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.session import audit_for, open_gallery, state_dir_from
    from facestream.accountability.zones import CameraZones
    from facestream.camera.sampler import FrameEncoder
    from facestream.camera.spec import CameraSpec
    from facestream.runtime.embedded import EmbeddedPipeline, SourceFailure, identify, specs_for
    from facestream.stages.detect import DetectStage
    from facestream.stages.embed import EmbedStage
    from facestream.stages.match import MatchStage
    from facestream.vision.factory import build_embedder, build_finder

    gallery_s = settings_from(args, GallerySettings)
    matcher_s = settings_from(args, MatcherSettings)
    sampler_s = settings_from(args, SamplerSettings)
    detector_s = settings_from(args, DetectorSettings)
    model_s = settings_from(args, ModelSettings)
    embedder = build_embedder(settings_from(args, EmbedderSettings), model_s)
    for source in args.sources:
        if "://" not in source and not Path(source).exists():
            raise ConfigError(f"source {source}: no such file or folder")
    if "://" not in gallery_s.gallery and not (Path(gallery_s.gallery) / "milvus.db").exists():
        raise ConfigError(f"gallery {gallery_s.gallery}: not found; enroll someone first")
    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "officer", args.actor)
    specs = [CameraSpec(**{**spec.model_dump(), "zone": args.zone}) for spec in specs_for(args.sources)]
    policy = AccountablePolicy(
        AuthorisationStore(state_dir),
        RuleStore(state_dir),
        CameraZones({spec.camera_id: spec.zone for spec in specs}),
    )
    audit = audit_for(state_dir)
    log.info("identify: %s", describe(matcher_s))
    started_ms = now_ms()
    candidates = 0
    gallery = open_gallery(gallery_s, state_dir, dim=embedder.dim)
    try:
        pipeline = EmbeddedPipeline(
            DetectStage(
                build_finder(detector_s, model_s),
                max_frame_pixels=detector_s.max_frame_pixels,
                thumbnail_px=detector_s.thumbnail_px,
            ),
            EmbedStage(embedder),
            MatchStage(gallery, threshold=matcher_s.match_threshold, top_k=matcher_s.top_k, policy=policy),
            episode_gap_ms=int(matcher_s.episode_gap_s * 1000),
        )
        failures: list[SourceFailure] = []
        for candidate in identify(
            pipeline,
            specs,
            default_fps=sampler_s.fps,
            encoder=FrameEncoder(sampler_s.jpeg_quality, sampler_s.max_frame_width),
            failures=failures,
        ):
            audit.append(
                actor=actor,
                action="candidate.open",
                authorisation_id=candidate.authorisation_id,
                objects={
                    "candidate_id": candidate.candidate_id,
                    "episode_id": candidate.episode_id,
                    "entry_id": candidate.entry_id,
                    "identity": candidate.identity,
                    "camera_id": candidate.ref.camera_id,
                    "frame_ts_ms": candidate.ref.captured_at_ms,
                    "score": round(candidate.score, 4),
                },
            )
            candidates += 1
            emit(candidate_json(candidate))
    finally:
        gallery.close()
        counts = policy.counts
        audit.append(
            actor=actor,
            action="identify.run",
            objects={
                "sources": len(args.sources),
                "cameras": sorted(spec.camera_id for spec in specs)[:200],
                "zone": args.zone,
                "started_ms": started_ms,
                "ended_ms": now_ms(),
                "authorisations": sorted(counts.authorisations),
                "faces": counts.faces,
                "suspended_faces": counts.suspended,
                "candidates": candidates,
            },
        )
    for failure in failures:
        log.error("source %s: %s", failure.source, failure.reason)
    return 1 if failures else 0
