"""The messages that flow between stages: one frozen type per topic.

Every message carries the `FrameRef` of the frame it came from, so a candidate can always
be traced to its camera, time and source without any stage keeping state. Identifiers
that downstream systems use to de-duplicate (`hit_id`, `candidate_id`) are derived from
content, never from wall-clock or random numbers, so a redelivered input produces the
same id again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

ALIGNED_SIZE = 112
"""Side of the aligned face crop, in pixels (the ArcFace template's size)."""

ALIGNED_BYTES = ALIGNED_SIZE * ALIGNED_SIZE * 3


def stable_id(*parts: str) -> str:
    """A short id that is the same every time the same parts are given."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:24]


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Where and when a frame was captured; copied onto everything derived from it."""

    camera_id: str
    frame_id: str
    captured_at_ms: int
    """Event time: wall clock at grab for live sources, start + media position for files."""
    source: str
    """The source it was read from, with any credentials removed."""


@dataclass(frozen=True, slots=True)
class BBox:
    """Face box in frame pixels."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def as_list(self) -> list[int]:
        return [round(self.x1), round(self.y1), round(self.x2), round(self.y2)]


@dataclass(frozen=True, slots=True)
class Quality:
    """The measurements the quality gates decided on, kept for review and tuning."""

    det_score: float
    size_px: float
    """Shorter side of the face box."""
    sharpness: float
    """Variance of the Laplacian of the aligned crop; low means blurred."""
    yaw: float
    """Nose offset from the eye midpoint over the eye distance: 0 frontal, ±0.5 strongly turned."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One sampled camera frame, JPEG-encoded: the payload of `frames`."""

    ref: FrameRef
    width: int
    height: int
    jpeg: bytes

    @property
    def key(self) -> bytes:
        return self.ref.camera_id.encode()


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face that passed the quality gates, aligned to 112x112: the payload of `faces`."""

    ref: FrameRef
    face_index: int
    bbox: BBox
    landmarks: tuple[tuple[float, float], ...]
    quality: Quality
    aligned: bytes
    """112x112x3 uint8 BGR, exactly what the embedder consumes (no lossy re-encode)."""
    thumbnail_jpeg: bytes
    """A small context crop for the reviewer; lives only as long as the topics' retention."""

    @property
    def face_id(self) -> str:
        return f"{self.ref.frame_id}/{self.face_index}"

    @property
    def key(self) -> bytes:
        return self.ref.camera_id.encode()

    def aligned_array(self) -> npt.NDArray[np.uint8]:
        return np.frombuffer(self.aligned, dtype=np.uint8).reshape(ALIGNED_SIZE, ALIGNED_SIZE, 3)


@dataclass(frozen=True, slots=True)
class Embedding:
    """An L2-normalised face vector: the payload of `embeddings`."""

    ref: FrameRef
    face_index: int
    bbox: BBox
    quality: Quality
    model_id: str
    vector: npt.NDArray[np.float32] = field(compare=False)
    thumbnail_jpeg: bytes

    @property
    def face_id(self) -> str:
        return f"{self.ref.frame_id}/{self.face_index}"

    @property
    def key(self) -> bytes:
        return self.ref.camera_id.encode()


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """One face matched one authorised watchlist entry above the threshold: what a hit and the
    candidate it opens both carry (the `hits` and `matches` schemas hold these fields, flat)."""

    ref: FrameRef
    face_index: int
    bbox: BBox
    score: float
    identity: str
    entry_id: str
    authorisation_id: str
    model_id: str
    thumbnail_jpeg: bytes
    zone: str | None
    """The camera's zone (camera group) when the face was matched, as the match policy saw it: what
    a downstream system routes on. None when the policy knew no zone for the camera (it then fails
    closed, accountability/zones.py), the policy has no zones (benchmarks), or the record was
    written before the field (v1)."""

    def match_fields(self) -> dict[str, Any]:
        """FaceMatch's own fields, by name: the keyword arguments that carry them into another
        kind of match (a hit's into the candidate it opens)."""
        return {f.name: getattr(self, f.name) for f in fields(FaceMatch)}


@dataclass(frozen=True, slots=True)
class Hit(FaceMatch):
    """The matcher's raw output: the payload of `hits`.

    Hits are keyed by (identity, camera) so that every hit of an episode lands on the same
    partition; the episode step turns them into candidates.
    """

    @property
    def hit_id(self) -> str:
        return stable_id(self.ref.frame_id, str(self.face_index), self.entry_id)

    @property
    def episode_key(self) -> str:
        return f"{self.identity}\x1f{self.ref.camera_id}"

    @property
    def key(self) -> bytes:
        return self.episode_key.encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate(FaceMatch):
    """A candidate match waiting for human review: the payload of `matches`.

    One per (identity, camera, episode). It is never an alert by itself: two different
    reviewers must confirm it first. Its own two ids are keyword-only: they come after the shared
    fields, and a call that gives them first, by position, fails instead of filling other fields.
    """

    candidate_id: str
    episode_id: str

    @property
    def key(self) -> bytes:
        return self.candidate_id.encode()

    @classmethod
    def open_episode(cls, hit: Hit) -> Candidate:
        """The candidate for the first hit of a new episode; its ids derive from that hit."""
        episode_id = stable_id("episode", hit.identity, hit.ref.camera_id, hit.hit_id)
        return cls(
            candidate_id=stable_id("candidate", episode_id), episode_id=episode_id, **hit.match_fields()
        )


@dataclass(frozen=True, slots=True)
class EpisodeEnd:
    """A candidate's episode went quiet: the payload of `episodes.ended` (the "face gone" event).

    Reported once no hit of the episode arrived for the episode gap (the Kafka mode: wall clock; the
    embedded mode: the camera's own clock, or its source's end). A later hit that
    still falls in the episode makes it report again, with the new counts: the last record of an
    `episode_id` is the final word. No face image: counts, times and ids only.
    """

    candidate_id: str
    episode_id: str
    identity: str
    camera_id: str
    zone: str | None
    authorisation_id: str
    first_seen_ms: int
    """Event time of the episode's earliest hit."""
    last_seen_ms: int
    """Event time of its latest hit."""
    hits: int
    best_score: float
    ended_at_ms: int
    """Wall clock when the end was reported."""

    @property
    def key(self) -> bytes:
        """The candidate's key: with equal partition counts it lands on the candidate's partition of
        `matches`."""
        return self.candidate_id.encode()
