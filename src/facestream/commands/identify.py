"""`facestream identify`: the embedded pipeline over files, folders and streams."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

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
    add_settings(
        p,
        GallerySettings,
        MatcherSettings,
        SamplerSettings,
        DetectorSettings,
        EmbedderSettings,
        ModelSettings,
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facestream.camera.sampler import FrameEncoder
    from facestream.gallery.store import Gallery
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
    log.info("identify: %s", describe(matcher_s))
    gallery = Gallery(gallery_s, dim=embedder.dim)
    try:
        pipeline = EmbeddedPipeline(
            DetectStage(
                build_finder(detector_s, model_s),
                max_frame_pixels=detector_s.max_frame_pixels,
                thumbnail_px=detector_s.thumbnail_px,
            ),
            EmbedStage(embedder),
            MatchStage(gallery, threshold=matcher_s.match_threshold, top_k=matcher_s.top_k),
            episode_gap_ms=int(matcher_s.episode_gap_s * 1000),
        )
        failures: list[SourceFailure] = []
        for candidate in identify(
            pipeline,
            specs_for(args.sources),
            default_fps=sampler_s.fps,
            encoder=FrameEncoder(sampler_s.jpeg_quality, sampler_s.max_frame_width),
            failures=failures,
        ):
            emit(candidate_json(candidate))
    finally:
        gallery.close()
    for failure in failures:
        log.error("source %s: %s", failure.source, failure.reason)
    return 1 if failures else 0
