"""Face tracks per camera, so that a person in front of a camera is embedded a few times, not in
every sampled frame.

The detector sees each camera's frames in order (frames are keyed by camera, so one replica reads
a camera's partition), which is what a tracker needs. A face continues a track when it overlaps
the track's last box (IoU), or, at low sampling rates where a walking face moves more than its
own width between samples, when its centre is within one box size and its size is similar; and
in both cases only when it also looks like the track's last face (a 24x24 grey thumbnail of the
aligned crop, correlated: >= 0.93 for the same face moved and re-detected, median 0.22 between
different people on ../shared/data/faces), so that the next person at a turnstile, standing
where the last one stood, starts a track of their own.
A track's face is forwarded (embedded and matched) when the track starts, when it is clearly
better than the best face forwarded so far (bigger, sharper, more frontal), and again after
`refresh_s`; the others are dropped at the detector, counted, and never leave it.

Why a small tracker of our own: at 1-3 sampled frames a second with a few faces each, a motion
model (the Kalman filters of SORT/ByteTrack) predicts little that the last box does not, and the
association fits in this module with its rules visible. Losing the state (a restart, a
rebalance) costs one more embedding per track, nothing else.

Replays are decided the same way: after an aborted transaction the runner processes the same
frames again, and a face forwarded the first time must be forwarded again (or it would never be
matched). Decisions are remembered per frame for the last `REMEMBERED_FRAMES` frames of a camera.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np
import numpy.typing as npt

from facestream.messages import BBox, Quality
from facestream.settings import DetectorSettings

REMEMBERED_FRAMES = 256
"""Per camera: a replayed batch (the runner's batch size is at most a few hundred frames, shared
by many cameras) falls within it."""


class Decision(Enum):
    NEW = "new"  # a track starts: forwarded
    BETTER = "better"  # clearly better than the track's best forwarded face: forwarded
    REFRESH = "refresh"  # refresh_s since the track last forwarded a face: forwarded
    SAME = "same"  # a face of a track already forwarded, not better: dropped

    @property
    def forwarded(self) -> bool:
        return self is not Decision.SAME


def face_score(quality: Quality) -> float:
    """How good a face is for recognition: its size, weighted by sharpness (Laplacian variance,
    counted up to 200; the gate rejects below 40) and by how frontal it is."""
    sharp = min(1.0, quality.sharpness / 200.0)
    frontal = max(0.0, 1.0 - abs(quality.yaw))
    return quality.size_px * (0.5 + 0.5 * sharp) * (0.5 + 0.5 * frontal)


def iou(a: BBox, b: BBox) -> float:
    inter = BBox(max(a.x1, b.x1), max(a.y1, b.y1), min(a.x2, b.x2), min(a.y2, b.y2)).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: BBox, b: BBox) -> float:
    return math.hypot((a.x1 + a.x2 - b.x1 - b.x2) / 2, (a.y1 + a.y2 - b.y1 - b.y2) / 2)


def near(a: BBox, b: BBox) -> bool:
    """Centres within one box size, sizes within a factor of two: the same face, moved."""
    size_a, size_b = max(a.width, a.height), max(b.width, b.height)
    if size_a <= 0 or size_b <= 0 or not 0.5 <= size_a / size_b <= 2.0:
        return False
    return centre_distance(a, b) <= max(size_a, size_b)


Appearance = npt.NDArray[np.float32]


def appearance(aligned: npt.NDArray[np.uint8]) -> Appearance:
    """A zero-mean, unit-norm 24x24 grey thumbnail of the aligned face: cheap (no model call)."""
    grey = cv2.resize(cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY), (24, 24), interpolation=cv2.INTER_AREA)
    vector = grey.astype(np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@dataclass(frozen=True)
class Seen:
    """A face that passed the gates, as the tracker sees it."""

    bbox: BBox
    quality: Quality
    looks: Appearance


@dataclass
class Track:
    track_id: int
    bbox: BBox
    looks: Appearance
    last_seen_ms: int
    best_score: float
    forwarded_at_ms: int


@dataclass
class CameraTracks:
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    decided: OrderedDict[str, list[Decision]] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class TrackSettings:
    max_gap_ms: int = 2_000
    """A track not seen for this long ends; its person's next face starts a new one."""
    refresh_ms: int = 10_000
    """A track forwards a face again after this long even if none is better."""
    better_by: float = 1.3
    """A face is clearly better when its score is at least this times the best forwarded one."""
    min_iou: float = 0.3
    min_likeness: float = 0.6
    """Correlation of appearances below which a face never continues a track."""


class FaceTracks:
    """Per-camera tracks and the forward/drop decision for each face of a frame."""

    def __init__(self, settings: TrackSettings = TrackSettings()) -> None:
        self.settings = settings
        self._cameras: dict[str, CameraTracks] = {}

    def decide(self, camera_id: str, frame_id: str, at_ms: int, faces: list[Seen]) -> list[Decision]:
        """One decision per face, in order; the same decisions again for a frame seen before."""
        camera = self._cameras.setdefault(camera_id, CameraTracks())
        remembered = camera.decided.get(frame_id)
        if remembered is not None and len(remembered) == len(faces):
            return remembered
        s = self.settings
        camera.tracks = [t for t in camera.tracks if abs(at_ms - t.last_seen_ms) <= s.max_gap_ms]
        free = list(camera.tracks)
        decisions: list[Decision] = []
        for face in faces:
            score = face_score(face.quality)
            track = self._associate(face, free)
            if track is None:
                track = Track(camera.next_id, face.bbox, face.looks, at_ms, score, at_ms)
                camera.next_id += 1
                camera.tracks.append(track)
                decisions.append(Decision.NEW)
                continue
            free.remove(track)
            track.bbox, track.looks, track.last_seen_ms = face.bbox, face.looks, at_ms
            if score >= track.best_score * s.better_by:
                decision = Decision.BETTER
            elif at_ms - track.forwarded_at_ms >= s.refresh_ms:
                decision = Decision.REFRESH
            else:
                decision = Decision.SAME
            if decision.forwarded:
                track.best_score, track.forwarded_at_ms = max(track.best_score, score), at_ms
            decisions.append(decision)
        camera.decided[frame_id] = decisions
        while len(camera.decided) > REMEMBERED_FRAMES:
            camera.decided.popitem(last=False)
        return decisions

    def _associate(self, face: Seen, free: list[Track]) -> Track | None:
        """Of the free tracks the face looks like: the one it overlaps most, else the nearest one
        that is `near`."""
        alike = [t for t in free if float(face.looks @ t.looks) >= self.settings.min_likeness]
        best = max(alike, key=lambda t: iou(face.bbox, t.bbox), default=None)
        if best is not None and iou(face.bbox, best.bbox) >= self.settings.min_iou:
            return best
        close = [t for t in alike if near(face.bbox, t.bbox)]
        return min(close, key=lambda t: centre_distance(face.bbox, t.bbox), default=None)


def tracks_for(detector: DetectorSettings) -> FaceTracks | None:
    """The detector's tracker as configured; None (every face forwarded) with --no-track-faces."""
    if not detector.track_faces:
        return None
    return FaceTracks(
        TrackSettings(
            max_gap_ms=round(detector.track_max_gap_s * 1000),
            refresh_ms=round(detector.track_refresh_s * 1000),
            better_by=detector.track_better_by,
        )
    )
