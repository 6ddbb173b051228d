"""hits → candidates: one candidate per (identity, camera, episode), and each exactly once.

An episode is an unbroken run of hits of one identity on one camera: a hit more than
`gap_ms` (event time) after the last one starts a new episode. The logic is plain code over
a `MutableMapping`, so the embedded mode passes a dict and the Kafka mode a faust Table
(changelog-backed, so a restart keeps every open episode). faust has no in-memory broker,
which is why the logic cannot live inside a faust agent.

Redelivery and replays (a crash before the commit, a file camera started again) bring old
hits back; none of them may add a candidate to `matches`:
- the opening hit again: the state says whether its candidate was confirmed published
  (`confirm`); if not, the caller is told it is a repeat and checks `matches` first;
- a hit older than the episode in progress (by more than the gap) belongs to an episode
  that is over: it is ignored, never the start of a new one;
- a hit inside the episode in progress only extends it.
Episodes not seen for a while are deleted (`expire`), so the state stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from facestream.errors import InvalidMessage
from facestream.messages import Candidate, Hit
from facestream.runtime import metrics

State = MutableMapping[str, Any]
"""episode key -> JSON-able dict; a faust Table with a json value serializer fits."""


@dataclass(frozen=True, slots=True)
class Opening:
    """A candidate to publish for the hit just observed."""

    candidate: Candidate
    repeat: bool
    """The hit opened this episode before and its candidate's publication was never confirmed:
    it may be in `matches` already, so look before publishing it again."""
    opened_at_ms: int
    """Wall-clock time the episode was opened: its candidate, if published, is not older."""


class EpisodeTracker:
    def __init__(self, state: State, *, gap_ms: int, clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._gap_ms = gap_ms
        self._clock = clock

    def observe(self, hit: Hit) -> Candidate | None:
        """The candidate to publish for this hit, or None; for callers that publish it in the
        same step (the embedded mode), so the opening is confirmed at once."""
        opening = self.track(hit)
        if opening is None:
            return None
        self.confirm(hit)
        return opening.candidate

    def track(self, hit: Hit, partition: int = 0) -> Opening | None:
        """The candidate to publish for this hit, or None when it opens nothing new.

        The opening is recorded before it is returned: the caller publishes the candidate,
        then calls `confirm`. A crash in between leaves the episode unconfirmed, and the
        redelivered opening hit comes back as a `repeat` with the same candidate id.
        `partition` (of `hits`) is kept with the episode, for `expire`.
        """
        key = hit.episode_key
        at = hit.ref.captured_at_ms
        now_ms = int(self._clock() * 1000)
        episode = self._state.get(key)
        if episode is not None and episode["opened_by"] == hit.hit_id:
            if episode.get("emitted", True):
                return None
            return Opening(Candidate.open_episode(hit), True, int(episode.get("opened_at_ms", 0)))
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
                "seen_at_ms": now_ms,
            }
            return None
        if episode is not None and at < episode["first_ms"]:
            return None  # from an episode that is over: a replay, never a new episode
        candidate = Candidate.open_episode(hit)
        self._state[key] = {
            "candidate_id": candidate.candidate_id,
            "opened_by": hit.hit_id,
            "first_ms": at,
            "last_ms": at,
            "hits": 1,
            "best_score": hit.score,
            "emitted": False,
            "opened_at_ms": now_ms,
            "seen_at_ms": now_ms,
            "partition": partition,
        }
        return Opening(candidate, False, now_ms)

    def confirm(self, hit: Hit) -> None:
        """The candidate this hit opened is in `matches`: a repeat of the hit opens nothing."""
        episode = self._state.get(hit.episode_key)
        if episode is not None and episode["opened_by"] == hit.hit_id and not episode.get("emitted", True):
            self._state[hit.episode_key] = {**episode, "emitted": True}

    def expire(self, seen_before_ms: int, partition: int | None = None) -> int:
        """Delete episodes last seen before `seen_before_ms` (wall clock), of one partition
        only when given (a faust table may delete only keys of the event's partition).
        Returns how many were deleted."""
        stale = [
            key
            for key, episode in list(self._state.items())
            if episode is not None
            and int(episode.get("seen_at_ms", 0)) < seen_before_ms
            and (partition is None or episode.get("partition", 0) == partition)
        ]
        for key in stale:
            del self._state[key]
        return len(stale)


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
