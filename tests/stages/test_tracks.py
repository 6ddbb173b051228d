"""Face tracks (stages/tracks.py) with real faces from ../shared/data/faces: a person in front of
a camera is forwarded when their track starts, when their face is clearly better, and after the
refresh; the next person in the same spot starts a track of their own; a replayed frame gets the
same decisions; and the detector, tracking, forwards fewer faces of a real video with their ids
unchanged. (That the same people are still found: the demo and the Kafka pipeline tests.)"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import cv2
import pytest
from prometheus_client import Counter

from facestream.messages import BBox, Frame, FrameRef
from facestream.runtime import metrics
from facestream.runtime.metrics import DetectorMetrics
from facestream.sample import make_camera_video
from facestream.stages.detect import DetectStage
from facestream.stages.tracks import Decision, FaceTracks, Seen, TrackSettings, appearance
from facestream.vision.faces import FaceFinder
from tests.dlq.world import jpeg

NEW, BETTER, REFRESH, SAME = Decision.NEW, Decision.BETTER, Decision.REFRESH, Decision.SAME


def sample(counter: Counter, **labels: str) -> float:
    """A counter's current value (0 for a label set never counted)."""
    for family in counter.collect():
        for s in family.samples:
            if s.name.endswith("_total") and s.labels == labels:
                return s.value
    return 0.0


@pytest.fixture(scope="module")
def people(finder: FaceFinder, faces_dir: Path) -> dict[str, Seen]:
    """The one face of each probe photo, as the detector saw it."""
    out = {}
    for name in ("obama", "alex_lacamoire", "kit_harington_unenrolled"):
        image = cv2.imread(str(faces_dir / "probe" / f"{name}.jpg"))
        (observation,) = [o for o in finder.find(image) if o.rejection is None]
        out[name] = Seen(observation.bbox, observation.quality, appearance(observation.aligned))
    return out


def moved(face: Seen, dx: float, scale: float = 1.0) -> Seen:
    b = face.bbox
    cx, cy, w, h = (b.x1 + b.x2) / 2 + dx, (b.y1 + b.y2) / 2, b.width * scale, b.height * scale
    quality = replace(face.quality, size_px=face.quality.size_px * scale)
    return Seen(BBox(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), quality, face.looks)


def test_a_person_in_front_of_a_camera_is_forwarded_when_new_better_or_due(people: dict[str, Seen]) -> None:
    tracks = FaceTracks(TrackSettings(max_gap_ms=2_000, refresh_ms=10_000, better_by=1.3))
    obama = people["obama"]
    width = obama.bbox.width
    decided = [
        tracks.decide("gate", f"gate@{t}", t, [moved(obama, dx, scale)])[0]
        for t, dx, scale in [
            (0, 0, 1.0),
            (500, 0.2 * width, 1.0),  # overlapping: the same track
            (1_000, 1.1 * width, 1.05),  # walked past its own width at a low rate: near, the same
            (1_500, 1.1 * width, 1.5),  # came closer: clearly better
            (2_000, 1.1 * width, 1.5),
            (11_500, 1.1 * width, 1.5),  # seen all along? no: a gap of 9.5 s ends the track
        ]
    ]
    assert decided == [NEW, SAME, SAME, BETTER, SAME, NEW]
    steady = [tracks.decide("gate", f"gate@{t}", t, [obama])[0] for t in range(20_000, 32_001, 1_000)]
    assert steady[0] is NEW and steady[10] is REFRESH  # 10 s after its last forwarded face
    assert [d for d in steady if d.forwarded] == [NEW, REFRESH]


def test_the_next_person_in_the_same_spot_starts_a_track_of_their_own(people: dict[str, Seen]) -> None:
    tracks = FaceTracks()
    obama, alex = people["obama"], people["alex_lacamoire"]
    in_obamas_place = Seen(obama.bbox, alex.quality, alex.looks)  # the same box, another face
    assert tracks.decide("turnstile", "t@0", 0, [obama]) == [NEW]
    assert tracks.decide("turnstile", "t@500", 500, [in_obamas_place]) == [NEW]
    assert tracks.decide("turnstile", "t@1000", 1_000, [in_obamas_place]) == [SAME]


def test_two_people_in_one_frame_keep_their_own_tracks_and_cameras_do_not_mix(
    people: dict[str, Seen],
) -> None:
    tracks = FaceTracks()
    obama, kit = people["obama"], moved(people["kit_harington_unenrolled"], 3 * people["obama"].bbox.width)
    assert tracks.decide("a", "a@0", 0, [obama, kit]) == [NEW, NEW]
    assert tracks.decide("a", "a@500", 500, [kit, obama]) == [SAME, SAME]
    assert tracks.decide("b", "b@500", 500, [obama]) == [NEW]  # another camera's frame


def test_a_replayed_frame_gets_the_decisions_it_got_before(people: dict[str, Seen]) -> None:
    """After an aborted transaction the runner processes the same frames again: a face forwarded
    the first time must be forwarded again, or it would never be matched."""
    tracks = FaceTracks()
    obama = people["obama"]
    first = [tracks.decide("gate", f"gate@{t}", t, [obama]) for t in (0, 500, 1_000)]
    again = [tracks.decide("gate", f"gate@{t}", t, [obama]) for t in (0, 500, 1_000)]
    assert first == again == [[NEW], [SAME], [SAME]]


def test_the_detector_tracking_a_real_video_forwards_fewer_faces_with_the_same_ids(
    finder: FaceFinder, faces_dir: Path, tmp_path: Path
) -> None:
    probe = faces_dir / "probe"
    video = make_camera_video(
        [probe / "obama.jpg", probe / "alex_lacamoire.jpg"],
        tmp_path / "gate.mp4",
        fps=5,
        seconds_each=4,
        gap_seconds=3,
    )
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        at_ms = 1_800_000_000_000 + len(frames) * 200
        frames.append(
            Frame(
                FrameRef("gate", f"gate@{at_ms}", at_ms, "gate.mp4"),
                image.shape[1],
                image.shape[0],
                jpeg(image),
            )
        )
    capture.release()
    every_counts, tracked_counts = DetectorMetrics.create(), DetectorMetrics.create()
    exported_before = sample(metrics.DETECTOR.faces_detected)
    every = DetectStage(finder, max_frame_pixels=10_000_000, thumbnail_px=64, metrics=every_counts)
    tracked = DetectStage(
        finder, max_frame_pixels=10_000_000, thumbnail_px=64, tracks=FaceTracks(), metrics=tracked_counts
    )
    all_faces = [f for faces in every.process(frames) for f in faces if not isinstance(faces, Exception)]
    kept = [f for faces in tracked.process(frames) for f in faces if not isinstance(faces, Exception)]
    # Two detectors in one process count apart, each into its own group, and neither into the
    # exported one (the service's).
    assert sample(every_counts.faces_detected) == sample(tracked_counts.faces_detected) >= len(all_faces)
    decisions = {d.value: sample(tracked_counts.faces_tracked, decision=d.value) for d in Decision}
    assert decisions["same"] == len(all_faces) - len(kept)
    assert sum(decisions.values()) == len(all_faces)
    assert sample(every_counts.faces_tracked, decision="new") == 0
    assert sample(metrics.DETECTOR.faces_detected) == exported_before
    assert len(all_faces) >= 30  # two people, 4 s each at 5 fps
    assert 2 <= len(kept) <= len(all_faces) / 5, (len(kept), len(all_faces))
    by_id = {f.face_id: f for f in all_faces}
    assert all(by_id[f.face_id].bbox == f.bbox for f in kept)  # ids do not depend on the tracker
    times = sorted({f.ref.captured_at_ms for f in all_faces})
    starts = [times[0]] + [t for prev, t in pairwise(times) if t - prev > 2_000]
    assert len(starts) == 2  # obama, then alex after the empty gap
    assert set(starts) <= {f.ref.captured_at_ms for f in kept}  # a track's first face goes on at once
