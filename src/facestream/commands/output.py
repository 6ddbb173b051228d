"""stdout carries only results, one JSON object per line; logs and errors go to stderr."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from facestream.messages import Candidate, EpisodeEnd


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def iso_ms(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def candidate_json(c: Candidate) -> dict[str, Any]:
    return {
        "identity": c.identity,
        "score": round(c.score, 4),
        "source": c.ref.source,
        "camera_id": c.ref.camera_id,
        "zone": c.zone,
        "frame_ts": iso_ms(c.ref.captured_at_ms),
        "frame_ts_ms": c.ref.captured_at_ms,
        "bbox": c.bbox.as_list(),
        "candidate_id": c.candidate_id,
        "episode_id": c.episode_id,
        "entry_id": c.entry_id,
        "authorisation_id": c.authorisation_id,
        "model_id": c.model_id,
    }


def episode_end_json(end: EpisodeEnd) -> dict[str, Any]:
    return {
        "candidate_id": end.candidate_id,
        "episode_id": end.episode_id,
        "identity": end.identity,
        "camera_id": end.camera_id,
        "zone": end.zone,
        "authorisation_id": end.authorisation_id,
        "first_seen": iso_ms(end.first_seen_ms),
        "first_seen_ms": end.first_seen_ms,
        "last_seen": iso_ms(end.last_seen_ms),
        "last_seen_ms": end.last_seen_ms,
        "hits": end.hits,
        "best_score": round(end.best_score, 4),
        "ended_at_ms": end.ended_at_ms,
    }
