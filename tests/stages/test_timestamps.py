"""Capture times outside the skew window, with the real models and photos: the detector
dead-letters a frame dated ahead of its clock (reason `future_timestamp`), accepts past ones
(replayed files), and no such frame hides the genuine match that follows it, through every
stage of the embedded pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.messages import Frame, FrameRef
from facestream.runtime.embedded import EmbeddedPipeline
from facestream.settings import GallerySettings, MatcherSettings
from facestream.stages.detect import FUTURE_TIMESTAMP, DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.match import MatchStage
from facestream.transport import topics
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.dlq.world import jpeg, photo
from tests.fixtures.clock import Clock

SKEW_S = 300.0
GAP_MS = 30_000
YEAR_2096_MS = 4_000_000_000_000
DAY_MS = 86_400_000


def obama_frame(faces_dir: Path, at_ms: int, camera: str = "gate") -> Frame:
    """The probe photo of an enrolled person, captured (so it says) at `at_ms`."""
    image = photo(faces_dir)
    ref = FrameRef(camera, f"{camera}@{at_ms}", at_ms, "test")
    return Frame(ref, image.shape[1], image.shape[0], jpeg(image))


def detect_stage(finder: FaceFinder, skew_s: float, clock: Callable[[], float] = time.time) -> DetectStage:
    return DetectStage(
        finder, max_frame_pixels=10_000_000, thumbnail_px=64, max_future_skew_s=skew_s, clock=clock
    )


def test_the_detector_refuses_only_frames_dated_beyond_the_window_ahead_of_its_clock(
    finder: FaceFinder, faces_dir: Path
) -> None:
    clock = Clock(1_800_000_000.0)
    now_ms = round(clock.now * 1000)
    frames = [
        obama_frame(faces_dir, now_ms + round(SKEW_S * 1000) + 1_000),  # beyond the window
        obama_frame(faces_dir, YEAR_2096_MS),
        obama_frame(faces_dir, now_ms + round(SKEW_S * 1000) - 1_000),  # a clock somewhat ahead
        obama_frame(faces_dir, now_ms - 400 * DAY_MS),  # a file replayed from last year
    ]

    outcomes = detect_stage(finder, SKEW_S, clock).process(frames)

    for refused in outcomes[:2]:
        assert isinstance(refused, InvalidMessage) and refused.reason == FUTURE_TIMESTAMP
        assert "ahead of the detector's clock" in refused.detail
    for accepted, frame in zip(outcomes[2:], frames[2:], strict=True):
        assert isinstance(accepted, list) and [f.ref for f in accepted] == [frame.ref]


def test_without_a_window_the_detector_accepts_any_time(finder: FaceFinder, faces_dir: Path) -> None:
    """0 is no limit: the embedded mode reads files faster than real time, stamped ahead."""
    [outcome] = detect_stage(finder, 0.0).process([obama_frame(faces_dir, YEAR_2096_MS)])
    assert isinstance(outcome, list) and len(outcome) == 1


@pytest.fixture
def gallery(tmp_path: Path, finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path) -> Iterator[Gallery]:
    """Milvus Lite with Obama enrolled from his enrollment photos."""
    store = Gallery(GallerySettings(gallery=str(tmp_path / "gallery")), dim=embedder.dim)
    try:
        Enroller(finder, embedder, store, store.settings).enroll(
            "obama", sorted((faces_dir / "enroll").glob("obama_*.jpg"))
        )
        yield store
    finally:
        store.close()


def test_future_and_past_frames_around_a_real_match_hide_no_candidate(
    finder: FaceFinder, embedder: FaceEmbedder, gallery: Gallery, faces_dir: Path
) -> None:
    pipeline = EmbeddedPipeline(
        detect_stage(finder, SKEW_S),
        EmbedStage(embedder),
        MatchStage(gallery, threshold=MatcherSettings().match_threshold, top_k=3),
        episode_gap_ms=GAP_MS,
    )
    now_ms = int(time.time() * 1000)
    forged = obama_frame(faces_dir, YEAR_2096_MS)
    frames = [
        forged,
        obama_frame(faces_dir, now_ms - DAY_MS),  # a past frame: a file replayed
        obama_frame(faces_dir, now_ms + 120_000),  # ahead, but inside the window
        obama_frame(faces_dir, now_ms),  # the genuine match, older than the one before
        obama_frame(faces_dir, now_ms + 5_000),  # the genuine episode goes on
    ]

    opened = []
    for frame in frames:
        pipeline.feed(frame)
        opened.append([c.ref.captured_at_ms for c in pipeline.drain()])

    assert opened == [[], [now_ms - DAY_MS], [now_ms + 120_000], [now_ms], []]
    [letter] = [e for p in pipeline.broker.partitions(topics.dlq("detector")) for e in p.log]
    assert letter.value == codec.FRAMES.encode(forged)
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["fs.dlq.reason"] == FUTURE_TIMESTAMP and headers["fs.dlq.stage"] == "detector"
    assert pipeline.dead_letters() == 1
