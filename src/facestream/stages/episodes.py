"""hits → candidates: one candidate per (identity, camera, episode).

An episode is an unbroken run of hits of one identity on one camera: a hit more than
`gap_ms` (event time) after the last one starts a new episode. The logic is plain code over
a `MutableMapping`, so the embedded mode passes a dict and the Kafka mode a faust Table
(changelog-backed, so a restart keeps every open episode). faust has no in-memory broker,
which is why the logic cannot live inside a faust agent.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from facestream.errors import InvalidMessage
from facestream.messages import Candidate, Hit
from facestream.runtime import metrics

State = MutableMapping[str, Any]
"""episode key -> JSON-able dict; a faust Table with a json value serializer fits."""


class EpisodeTracker:
    def __init__(self, state: State, *, gap_ms: int) -> None:
        self._state = state
        self._gap_ms = gap_ms

    def observe(self, hit: Hit) -> Candidate | None:
        """The candidate to publish for this hit, or None when its episode already has one.

        A redelivered opening hit returns its candidate again (same id), so a crash between
        updating the state and publishing cannot lose the candidate; consumers de-duplicate
        by `candidate_id`.
        """
        key = hit.episode_key
        at = hit.ref.captured_at_ms
        episode = self._state.get(key)
        if episode is not None and episode["opened_by"] == hit.hit_id:
            return Candidate.open_episode(hit)
        if (
            episode is not None
            and episode["first_ms"] - self._gap_ms <= at <= episode["last_ms"] + self._gap_ms
        ):
            self._state[key] = {
                **episode,
                "first_ms": min(episode["first_ms"], at),
                "last_ms": max(episode["last_ms"], at),
                "hits": episode["hits"] + 1,
                "best_score": max(episode["best_score"], hit.score),
            }
            return None
        candidate = Candidate.open_episode(hit)
        self._state[key] = {
            "candidate_id": candidate.candidate_id,
            "opened_by": hit.hit_id,
            "first_ms": at,
            "last_ms": at,
            "hits": 1,
            "best_score": hit.score,
        }
        return candidate


class EpisodeStage:
    """The tracker as a pipeline stage, for the embedded mode and tests."""

    name = "episodes"

    def __init__(self, tracker: EpisodeTracker) -> None:
        self._tracker = tracker

    def process(self, items: Sequence[Hit]) -> list[list[Candidate] | InvalidMessage]:
        outcomes: list[list[Candidate] | InvalidMessage] = []
        for hit in items:
            candidate = self._tracker.observe(hit)
            if candidate is not None:
                metrics.CANDIDATES.inc()
            outcomes.append([candidate] if candidate is not None else [])
        return outcomes
