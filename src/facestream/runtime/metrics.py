"""Every metric facestream exports, in one place.

Names follow Prometheus conventions: one `facestream_` prefix, base units in the name
(`_seconds`, `_bytes`), `_total` for counters. Dashboards and alert rules in helm/ use only
names defined here (a test cross-checks them against what running services export).
Label values are bounded: stage, topic, partition, reason and camera id.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# -- every consuming stage (RED) ------------------------------------------------------------
MESSAGES = Counter(
    "facestream_stage_messages_total",
    "Input messages a stage finished, by outcome (ok: processed; dlq: sent to its dead-letter topic)",
    ["stage", "outcome"],
)
OUTPUTS = Counter("facestream_stage_outputs_total", "Output messages a stage produced", ["stage"])
DLQ = Counter(
    "facestream_dlq_messages_total", "Messages sent to a dead-letter topic, by reason", ["stage", "reason"]
)
BATCH_SECONDS = Histogram(
    "facestream_stage_batch_duration_seconds",
    "Time from a batch's poll to its commit",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "facestream_stage_batch_size",
    "Messages per processed batch",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
ERRORS = Counter(
    "facestream_stage_errors_total",
    "Failures that stopped a batch from committing (delivery, gallery, crash), by kind",
    ["stage", "kind"],
)
INPUT_REJOINS = Counter(
    "facestream_input_rejoins_total",
    "Times a stage rejoined its group with a new client: its input stalled (messages waiting, none "
    "delivered), or its client was dead (a static member fenced)",
    ["stage"],
)
CONSUMER_LAG = Gauge(
    "facestream_consumer_lag_messages",
    "Messages between this consumer's committed offset and the partition's end",
    ["stage", "topic", "partition"],
)
LAST_POLL = Gauge(
    "facestream_last_poll_timestamp_seconds", "Unix time of the processing loop's last poll", ["stage"]
)

# -- the stages' own counts -------------------------------------------------------------------
# A stage counts into the group it is given, never into a global: the service that runs it passes
# the process's group (DETECTOR, MATCHER: exported on /metrics); a stage built any other way (a
# test, the identify command, a second stage in one process) counts into a group of its own that
# is not exported, so two stages in one process never add into one series.


@dataclass(frozen=True)
class DetectorMetrics:
    faces_detected: Counter
    faces_rejected: Counter
    faces_tracked: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> DetectorMetrics:
        """A new group; `registry=None` (the default) is one that is not exported."""
        return cls(
            Counter("facestream_faces_detected_total", "Faces found by the detector", registry=registry),
            Counter(
                "facestream_faces_rejected_total",
                "Faces dropped by a quality gate, by gate",
                ["reason"],
                registry=registry,
            ),
            Counter(
                "facestream_faces_tracked_total",
                "Faces that passed the gates, by the tracker's decision (new, better, refresh: "
                "forwarded; same: dropped, its track already forwarded a face as good)",
                ["decision"],
                registry=registry,
            ),
        )


@dataclass(frozen=True)
class MatcherMetrics:
    gallery_up: Gauge
    gallery_search_seconds: Histogram
    hits: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> MatcherMetrics:
        """A new group; `registry=None` (the default) is one that is not exported."""
        return cls(
            Gauge("facestream_gallery_up", "1 when the last gallery search succeeded", registry=registry),
            Histogram(
                "facestream_gallery_search_duration_seconds",
                "Time of one batched gallery search",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            Counter(
                "facestream_hits_total", "Faces that matched an authorised watchlist entry", registry=registry
            ),
        )


DETECTOR = DetectorMetrics.create(REGISTRY)
MATCHER = MatcherMetrics.create(REGISTRY)

# -- matcher ---------------------------------------------------------------------------------
GALLERY_ENTRIES = Gauge("facestream_gallery_entries", "Watchlist vectors in the gallery")
AUDIT_TOPIC_FAILURES = Counter(
    "facestream_audit_topic_failures_total",
    "Audit records the audit topic did not take; the action they record was not done (it is retried)",
)
CANDIDATES = Counter("facestream_candidates_total", "Candidates opened (one per identity, camera, episode)")
EPISODES_ENDED = Counter(
    "facestream_episodes_ended_total", "Episode ends published to episodes.ended (a candidate's face gone)"
)
FRAME_TO_CANDIDATE_SECONDS = Histogram(
    "facestream_frame_to_candidate_latency_seconds",
    "From frame capture to the candidate being published",
    buckets=LATENCY_BUCKETS,
)

# -- frame-sampler (per camera) --------------------------------------------------------------
CAMERAS_ASSIGNED = Gauge("facestream_cameras_assigned", "Cameras this sampler replica runs")
CAMERA_UP = Gauge("facestream_camera_up", "1 while the camera delivers frames", ["camera"])
CAMERA_FPS = Gauge("facestream_camera_fps", "Frames per second published, over the last window", ["camera"])
CAMERA_LAST_FRAME_AGE = Gauge(
    "facestream_camera_last_frame_age_seconds", "Seconds since the camera's last frame", ["camera"]
)
CAMERA_RECONNECTS = Counter(
    "facestream_camera_reconnects_total", "Times the camera was reopened after a failure", ["camera"]
)
CAMERA_FROZEN = Gauge("facestream_camera_frozen", "1 when recent frames are identical", ["camera"])
CAMERA_BLACK = Gauge("facestream_camera_black", "1 when recent frames are (nearly) black", ["camera"])
FRAMES_PUBLISHED = Counter("facestream_frames_published_total", "Frames published to `frames`", ["camera"])
FRAME_BYTES = Histogram(
    "facestream_frame_size_bytes",
    "JPEG size of published frames",
    buckets=(10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000),
)


# -- review (the alert/review layer) ---------------------------------------------------------
REVIEW_PENDING = Gauge("facestream_review_pending_candidates", "Candidates waiting for a reviewer decision")
REVIEW_OLDEST_PENDING_AGE = Gauge(
    "facestream_review_oldest_pending_age_seconds",
    "Age of the oldest candidate still waiting for review (0 when none waits)",
)
REVIEW_DECISIONS = Counter(
    "facestream_review_decisions_total",
    "Reviewer outcomes of candidates, by decision (confirmed, rejected, expired)",
    ["decision"],
)
REVIEW_VOTES = Counter(
    "facestream_review_votes_total",
    "Reviewer decisions the review service received, by decision (confirm, reject) and result "
    "(counted; repeated: the same reviewer again; refused: unknown/closed candidate, no reviewer role)",
    ["decision", "result"],
)
ALERTS_CONFIRMED = Counter(
    "facestream_alerts_confirmed_total", "Alerts published to alerts.confirmed after two reviewers confirmed"
)
REVIEW_SIGNINS = Counter(
    "facestream_review_signins_total",
    "Sign-in attempts on the review web app, by result (ok, failed, locked; sso_denied: the SSO proxy's "
    "person is in no reviewers' group or has no reviewer role)",
    ["result"],
)


def forget_camera(camera_id: str) -> None:
    """Drop a camera's series when it moves to another replica, so it is not counted twice."""
    for series in (
        CAMERA_UP,
        CAMERA_FPS,
        CAMERA_LAST_FRAME_AGE,
        CAMERA_FROZEN,
        CAMERA_BLACK,
        CAMERA_RECONNECTS,
        FRAMES_PUBLISHED,
    ):
        with contextlib.suppress(KeyError):
            series.remove(camera_id)


# -- frame-sampler decoding (issue 10; per camera, PyAV-read files and streams) ----------------
CAMERA_GOP_SECONDS = Gauge(
    "facestream_camera_gop_seconds", "Seconds between the camera's last two key frames", ["camera"]
)
CAMERA_GOP_OVER_INTERVAL = Gauge(
    "facestream_camera_gop_over_interval",
    "1 when the camera's GOP is longer than its sampling interval: each GOP is decoded from its key "
    "frame up to the last sampled frame, not key frames only",
    ["camera"],
)
CAMERA_FRAMES_DECODED = Counter(
    "facestream_camera_frames_decoded_total",
    "Frames the camera's decoder decoded (about one per sample when only key frames are decoded)",
    ["camera"],
)
CAMERA_FRAMES_DROPPED = Counter(
    "facestream_camera_frames_dropped_total",
    "Frames left undecoded in a GOP decoded up to a sample: H.264 frames no other frame refers to "
    "(B-frames, an SVC-T camera's top layer) that are not samples themselves",
    ["camera"],
)
