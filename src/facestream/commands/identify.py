"""`facestream identify`: the embedded pipeline over files, folders and streams.

A search (role officer) under the match policy: only entries of authorisations in force at
each frame's time and in scope for its camera (sources are in zone `--zone`, default
"default") can match, and nothing matches under a suspension rule. Each candidate is audited
(`candidate.open`) and the run as a whole (`identify.run`: sources, cameras, period,
authorisations checked, counts). Faces that match nothing leave no trace.

Memory stays bounded whatever the input: a still is refused from its header when it claims
more than `--max-frame-pixels`, and files and stills go through the pipeline one at a time
(runtime/embedded.py). A source that cannot be read is reported and the others go on; the
exit status is then 1.

What the user is told: progress bars on a terminal (commands/identify_progress.py), each
candidate with its position in a video file (`media_offset_s`), and at the end a summary per
SOURCE argument on stderr (commands/identify_summary.py), also on stdout as one last JSON object
with `--summary`; with `--episode-ends`, a line when a candidate's episode ends (the face gone:
first and last seen, hits, best score), as the Kafka mode's `episodes.ended`. The camera
libraries' own log lines (OpenCV, its FFmpeg) are switched off: a source's failure reaches the
user once, as identify's own line naming the source. `--annotate DIR` keeps a picture of each
candidate's frame, every other face pixelated, and a page listing them (commands/annotate.py):
what a person checks a candidate against.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.roles import add_actor_flag
from facestream.accountability.settings import AccountabilitySettings
from facestream.camera.spec import IMAGE_SUFFIXES, ZONE, CameraSpec
from facestream.cliargs import Only, add_settings, describe, settings_from
from facestream.commands.output import candidate_json, emit, episode_end_json
from facestream.errors import ConfigError
from facestream.settings import (
    DetectorSettings,
    EmbedderSettings,
    GallerySettings,
    MatcherSettings,
    ModelSettings,
    SamplerSettings,
)

if TYPE_CHECKING:
    from facestream.commands.identify_summary import RunTally
    from facestream.messages import EpisodeEnd
    from facestream.runtime.embedded import SourceFailure

log = logging.getLogger("facestream.identify")

FAILURES_SHOWN_PER_FOLDER = 5
"""Failed images of one folder reported by name; the rest are counted in one line."""


def _zone(text: str) -> str:
    if not re.fullmatch(ZONE, text):
        raise argparse.ArgumentTypeError(f"zone {text!r}: 1-64 letters, digits, . _ -")
    return text


def _annotate_dir(text: str) -> Path:
    from facestream.commands.annotate import unusable

    why = unusable(Path(text))
    if why is not None:
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return Path(text)


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
    p.add_argument(
        "--summary",
        action="store_true",
        help='end stdout with one JSON object {"summary": ...}: per source, frames, faces, faces '
        "rejected by each quality gate, candidates (the same summary is always written to stderr)",
    )
    p.add_argument(
        "--episode-ends",
        action="store_true",
        help='also print {"episode_ended": ...} when a candidate\'s episode ends (no hit of it in '
        "the episode gap by its camera's own clock, or its source ended): first and last seen, "
        "hits, best score; the Kafka mode's episodes.ended",
    )
    p.add_argument(
        "--annotate",
        type=_annotate_dir,
        metavar="DIR",
        help="write each candidate's frame to DIR (new or empty) with its box, identity and score "
        "drawn and every other face pixelated, and DIR/index.html listing them",
    )
    add_actor_flag(p)
    add_settings(
        p,
        GallerySettings,
        AccountabilitySettings,
        # of the sampler and matcher, only what a run here uses (no reconnects, no episode tables)
        Only(MatcherSettings, "match_threshold", "top_k", "episode_gap_s"),
        Only(SamplerSettings, "fps", "jpeg_quality", "max_frame_width"),
        DetectorSettings,
        EmbedderSettings,
        ModelSettings,
        AUDIT_SIGNING,
    )
    p.set_defaults(handler=run)


def quiet_camera_libraries() -> None:
    """OpenCV's `[ WARN:0@...] global cap.cpp` lines and its FFmpeg's `[http @ 0x...]` lines go
    straight to the terminal and say again, in their terms, what identify reports per source.
    An OPENCV_LOG_LEVEL or OPENCV_FFMPEG_LOGLEVEL set by the user (to debug) is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg starts
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def run(args: argparse.Namespace) -> int:
    """Ctrl-C (SIGINT) is how a live stream is stopped. It only asks the reading to stop between
    two frames: a KeyboardInterrupt raised wherever the signal lands (inside a gallery call, a
    model's inference, a grab thread's join) could leave the gallery or a camera half-closed, and
    once left identify hung on its way out. A second Ctrl-C interrupts at once."""
    stop = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        return _run(args, stop)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.clock import now_ms
    from facestream.accountability.policy import AccountablePolicy
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.session import audit_for, open_gallery, state_dir_from
    from facestream.accountability.zones import CameraZones
    from facestream.camera.sampler import FrameEncoder
    from facestream.commands.identify_progress import Progress
    from facestream.commands.identify_summary import CountingPipeline, FrameDone, RunTally
    from facestream.runtime.embedded import identify, specs_for
    from facestream.runtime.metrics import DetectorMetrics
    from facestream.stages.detect import DetectStage
    from facestream.stages.embed import EmbedStage
    from facestream.stages.match import MatchStage
    from facestream.stages.tracks import tracks_for
    from facestream.vision.factory import build_detector, build_embedder, build_finder

    gallery_s = settings_from(args, GallerySettings)
    matcher_s = settings_from(args, MatcherSettings)
    sampler_s = settings_from(args, SamplerSettings)
    detector_s = settings_from(args, DetectorSettings)
    model_s = settings_from(args, ModelSettings)
    embedder = build_embedder(settings_from(args, EmbedderSettings), model_s)
    for source in args.sources:
        check_source(source)
    if "://" not in gallery_s.gallery and not (Path(gallery_s.gallery) / "milvus.db").exists():
        raise ConfigError(f"gallery {gallery_s.gallery}: not found; enroll someone first")
    if detector_s.track_faces and matcher_s.episode_gap_s <= detector_s.track_refresh_s:
        log.warning(
            "--episode-gap-s %g is not above --track-refresh-s %g: a face that stays in view is matched "
            "again only every %g s, so each of those matches opens a new candidate; set the gap above it",
            matcher_s.episode_gap_s,
            detector_s.track_refresh_s,
            detector_s.track_refresh_s,
        )
    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "officer", args.actor)
    specs = [CameraSpec(**{**spec.model_dump(), "zone": args.zone}) for spec in specs_for(args.sources)]
    policy = AccountablePolicy(
        AuthorisationStore(state_dir),
        RuleStore(state_dir),
        CameraZones({spec.camera_id: spec.zone for spec in specs}),
    )
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    log.info("identify: %s", describe(matcher_s))
    quiet_camera_libraries()
    tally = RunTally(args.sources, specs)
    watchers: list[FrameDone] = [tally.frame_done]
    annotator = None
    if args.annotate is not None:
        from facestream.commands.annotate import BLUR_SCORE, Annotator, prepare

        annotator = Annotator(
            prepare(args.annotate),
            build_detector(detector_s.model_copy(update={"det_score_threshold": BLUR_SCORE}), model_s),
            max_pixels=detector_s.max_frame_pixels,
            media_offset_s=lambda c: tally.media_offset_s(c.ref.camera_id, c.ref.captured_at_ms),
            exporting=lambda c, path: audit.append(
                actor=actor,
                action="candidate.export",
                authorisation_id=c.authorisation_id,
                objects={"candidate_id": c.candidate_id, "identity": c.identity, "file": str(path)[-400:]},
            ),
        )
        watchers.append(annotator.frame_done)
    # for a person at a terminal, like the summary: a caller that silences facestream's logs
    # (the demo) silences the bars too
    progress = Progress(tally, stream=sys.stderr) if sys.stderr.isatty() and _telling() else None
    if progress is not None:
        watchers.append(progress.frame_done)
    started_ms = now_ms()
    candidates = 0
    interrupted = False
    failures: list[SourceFailure] = []
    gallery = open_gallery(gallery_s, state_dir, audit, dim=embedder.dim)
    detector_metrics = DetectorMetrics.create()  # this run's own: the summary reads it
    try:
        pipeline = CountingPipeline(
            DetectStage(
                build_finder(detector_s, model_s),
                max_frame_pixels=detector_s.max_frame_pixels,
                thumbnail_px=detector_s.thumbnail_px,
                tracks=tracks_for(detector_s),
                metrics=detector_metrics,
            ),
            EmbedStage(embedder),
            MatchStage(gallery, threshold=matcher_s.match_threshold, top_k=matcher_s.top_k, policy=policy),
            metrics=detector_metrics,
            episode_gap_ms=int(matcher_s.episode_gap_s * 1000),
            watchers=watchers,
        )
        with progress.showing() if progress is not None else contextlib.nullcontext():
            for candidate in identify(
                pipeline,
                specs,
                default_fps=sampler_s.fps,
                encoder=FrameEncoder(sampler_s.jpeg_quality, sampler_s.max_frame_width),
                failures=failures,
                max_pixels=detector_s.max_frame_pixels,
                stop=stop,
                on_end=_end_printer(tally) if args.episode_ends else None,
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
                        "zone": candidate.zone,
                        "frame_ts_ms": candidate.ref.captured_at_ms,
                        "score": round(candidate.score, 4),
                    },
                )
                candidates += 1
                shown = {
                    **candidate_json(candidate),
                    "media_offset_s": tally.media_offset_s(
                        candidate.ref.camera_id, candidate.ref.captured_at_ms
                    ),
                }
                tally.candidate(candidate, shown)
                emit(shown)
        if stop.is_set():  # how a live stream is stopped: what was read is still summarised
            interrupted = True
            log.warning("interrupted: stopped reading; the summary covers what was read")
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
        tally.failure(failure)
    for line in failure_report(args.sources, specs, failures):
        log.error("%s", line)
    if annotator is not None:
        page = annotator.write_page(tally.text())
        log.info("pictures of %d candidates, other faces pixelated: %s", len(annotator.rows), page)
    if _telling():
        sys.stderr.write(tally.text())
        sys.stderr.flush()
    if args.summary:
        emit(tally.as_json())
    if interrupted:
        return 130
    return 1 if failures else 0


def _end_printer(tally: RunTally) -> Callable[[EpisodeEnd], None]:
    """Prints an ended episode as its line, with where in its video it was seen (for a video)."""

    def printed(end: EpisodeEnd) -> None:
        emit(
            {
                "episode_ended": {
                    **episode_end_json(end),
                    "first_seen_offset_s": tally.media_offset_s(end.camera_id, end.first_seen_ms),
                    "last_seen_offset_s": tally.media_offset_s(end.camera_id, end.last_seen_ms),
                }
            }
        )

    return printed


def _telling() -> bool:
    """Whether the summary and the bars are wanted: facestream's logs are shown at INFO."""
    return log.isEnabledFor(logging.INFO)


def check_source(source: str) -> None:
    """A SOURCE that names nothing to read is a bad argument (exit 2), found before any work."""
    if "://" in source:
        return
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"source {source}: no such file or folder")
    if path.is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        raise ConfigError(f"source {source}: no images in this folder ({' '.join(sorted(IMAGE_SUFFIXES))})")


def failure_report(
    sources: Sequence[str], specs: Sequence[CameraSpec], failures: Sequence[SourceFailure]
) -> list[str]:
    """One line per failed SOURCE argument; a folder's failures are summarised.

    A file or stream named on the command line gets its own line: the list is as long as
    what the user typed. A folder can hold thousands of stills, and a thousand like lines
    bury the one that matters and say no more than a count does, so a folder gets:
    - one line when none of its images was usable (the folder itself is likely the mistake),
      with the first failure as an example;
    - otherwise its first FAILURES_SHOWN_PER_FOLDER failed images by name (enough to see
      the reasons and find the files), then one line counting the rest.
    """
    failed: dict[str, list[SourceFailure]] = {}
    for failure in failures:
        failed.setdefault(failure.source, []).append(failure)
    lines: list[str] = []
    for source in dict.fromkeys(sources):
        folder = Path(source)
        if "://" in source or not folder.is_dir():
            lines += [_line(f) for f in failed.pop(source, [])]
            continue
        members = list(dict.fromkeys(s.redacted_url for s in specs if Path(s.url).parent == folder))
        bad = [failed.pop(url)[0] for url in members if url in failed]
        if not bad:
            continue
        if len(bad) == len(members):
            lines.append(
                f"source {source}: no usable image, all {len(members)} failed; the first: {_reason(bad[0])}"
            )
            continue
        lines += [_line(f) for f in bad[:FAILURES_SHOWN_PER_FOLDER]]
        if len(bad) > FAILURES_SHOWN_PER_FOLDER:
            rest = len(bad) - FAILURES_SHOWN_PER_FOLDER
            lines.append(f"source {source}: {rest} more of its {len(members)} images failed")
    lines += [_line(f) for rest in failed.values() for f in rest]  # none expected: nothing is lost
    return lines


def _line(failure: SourceFailure) -> str:
    return f"source {_reason(failure)}"


def _reason(failure: SourceFailure) -> str:
    """`URL: reason`, the URL once (camera errors already start with it)."""
    return f"{failure.source}: {failure.reason.removeprefix(f'{failure.source}: ')}"
