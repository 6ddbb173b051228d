"""hits → candidates: one candidate per (identity, camera, episode), and each exactly once.

An episode is an unbroken run of hits of one identity on one camera: hits within `gap_ms`
(event time) of each other. The logic is plain code over a `MutableMapping`, so the embedded
mode passes a dict and the Kafka mode a faust Table (changelog-backed, so a restart keeps
every open episode). faust has no in-memory broker, which is why the logic cannot live
inside a faust agent.

No record's timestamp may hide another hit. Times can be wrong (a camera clock far off, a
forged record) and arrive out of order (a clock stepped back, a file camera replayed), so a
hit is never judged by how it compares with the latest episode. The state remembers, per
identity and camera, the episodes seen lately (up to MAX_EPISODES), each as the span of
event time its hits cover, and a hit:
- that opened one of them comes back as a repeat: the state says whether its candidate was
  confirmed published (`confirm`); if not, the caller is told to check `matches` first;
- within `gap_ms` of one of them belongs to it (the nearest) and extends it: a redelivered
  or replayed hit carries its original time, so it falls in the episode it was part of;
- anywhere else opens a new episode, whatever times came before it. A record dated 2096
  opens an episode around 2096, far from every genuine hit.
Episodes not seen for a while (wall clock) are deleted (`expire`), so the state stays bounded.

An episode whose candidate was published and which had no hit for `gap_ms` (wall clock) has
ended: `ends_due` lists it for the `episodes.ended` topic (the "face gone" event), and
`end_reported` marks it so; a later hit in the same episode makes it due again with its new
counts. The caller that reports ends may run outside the hits' own processing (the Kafka mode's
timer), so the mark goes through `write`, which names the key's partition itself. The embedded
mode reads files faster or slower than they were filmed, so there `ends_on_camera` decides by the
camera's own clock instead: a frame captured more than `gap_ms` after the episode's last hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from facestream.errors import InvalidMessage
from facestream.messages import Candidate, EpisodeEnd, Hit, stable_id

State = MutableMapping[str, Any]
"""episode key -> JSON-able dict; a faust Table with a json value serializer fits."""
StateWrite = Callable[[str, dict[str, Any], int], None]
"""Set (key, record) in the state as partition `partition`'s, from wherever it is called: a dict
just sets it; a faust table outside its agent has no event to take the partition from."""

MAX_EPISODES = 32
"""Episodes remembered per (identity, camera); beyond it the least recently seen is forgotten.
A replay of a forgotten episode opens it again, so keep it above what a key sees in a time to live."""


@dataclass(frozen=True, slots=True)
class Opening:
    """A candidate to publish for the hit just observed."""

    candidate: Candidate
    repeat: bool
    """The hit opened this episode before and its candidate's publication was never confirmed:
    it may be in `matches` already, so look before publishing it again."""
    opened_at_ms: int
    """Wall-clock time the episode was opened: its candidate, if published, is not older."""


@dataclass(frozen=True, slots=True)
class DueEnd:
    """An ended episode to report, and where its state lives."""

    end: EpisodeEnd
    key: str
    partition: int


def _episodes(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The remembered episodes of a key, least recently seen first. A record written before
    several were kept holds one episode at its top level."""
    if record is None:
        return []
    if "episodes" in record:
        return list(record["episodes"])
    return [{k: v for k, v in record.items() if k != "partition"}]


def _distance(episode: dict[str, Any], at: int) -> int:
    return max(0, int(episode["first_ms"]) - at, at - int(episode["last_ms"]))


class EpisodeTracker:
    def __init__(
        self,
        state: State,
        *,
        gap_ms: int,
        clock: Callable[[], float] = time.time,
        max_episodes: int = MAX_EPISODES,
        write: StateWrite | None = None,
    ) -> None:
        self._state = state
        self._gap_ms = gap_ms
        self._clock = clock
        self._max_episodes = max_episodes
        self._write: StateWrite = write or (lambda key, record, _partition: state.__setitem__(key, record))

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
        `partition` (of `hits`) is kept with the key, for `expire`.
        """
        key = hit.episode_key
        at = hit.ref.captured_at_ms
        now_ms = int(self._clock() * 1000)
        episodes = _episodes(self._state.get(key))
        for episode in episodes:
            if episode["opened_by"] == hit.hit_id:
                if episode.get("emitted", True):
                    return None
                return Opening(Candidate.open_episode(hit), True, int(episode.get("opened_at_ms", 0)))
        near = [e for e in episodes if _distance(e, at) <= self._gap_ms]
        if near:
            episode = min(near, key=lambda e: _distance(e, at))
            extended = {
                **episode,
                "first_ms": min(episode["first_ms"], at),
                "last_ms": max(episode["last_ms"], at),
                "hits": episode["hits"] + 1,
                "best_score": max(episode["best_score"], hit.score),
                "seen_at_ms": now_ms,
            }
            self._save(key, [e for e in episodes if e is not episode] + [extended], partition)
            return None
        candidate = Candidate.open_episode(hit)
        opened = {
            "candidate_id": candidate.candidate_id,
            "episode_id": candidate.episode_id,
            "authorisation_id": hit.authorisation_id,
            "zone": hit.zone,
            "opened_by": hit.hit_id,
            "first_ms": at,
            "last_ms": at,
            "hits": 1,
            "best_score": hit.score,
            "emitted": False,
            "opened_at_ms": now_ms,
            "seen_at_ms": now_ms,
        }
        self._save(key, [*episodes, opened][-self._max_episodes :], partition)
        return Opening(candidate, False, now_ms)

    def confirm(self, hit: Hit) -> None:
        """The candidate this hit opened is in `matches`: a repeat of the hit opens nothing."""
        record = self._state.get(hit.episode_key)
        episodes = _episodes(record)
        for i, episode in enumerate(episodes):
            if episode["opened_by"] == hit.hit_id and not episode.get("emitted", True):
                episodes[i] = {**episode, "emitted": True}
                self._save(hit.episode_key, episodes, int((record or {}).get("partition", 0)))
                return

    def expire(self, seen_before_ms: int, partition: int | None = None) -> int:
        """Forget episodes last seen before `seen_before_ms` (wall clock), of one partition only
        when given (a faust table may write only keys of the event's partition); a key left
        with none is deleted. Returns how many episodes were forgotten."""
        forgotten = 0
        for key, record in list(self._state.items()):
            if record is None or (partition is not None and record.get("partition", 0) != partition):
                continue
            episodes = _episodes(record)
            kept = [e for e in episodes if int(e.get("seen_at_ms", 0)) >= seen_before_ms]
            if len(kept) == len(episodes):
                continue
            forgotten += len(episodes) - len(kept)
            if kept:
                self._save(key, kept, int(record.get("partition", 0)))
            else:
                del self._state[key]
        return forgotten

    def ends_due(self, partitions: Collection[int] | None = None) -> list[DueEnd]:
        """Episodes (of `partitions` only, when given) whose candidate was published, unseen for the
        gap (wall clock) and not reported ended at their present count of hits."""
        now_ms = int(self._clock() * 1000)
        return [
            due
            for key, partition, e in self._published()
            if (partitions is None or partition in partitions)
            and now_ms - int(e.get("seen_at_ms", now_ms)) >= self._gap_ms
            and (due := self._due_end(key, partition, e, now_ms)) is not None
        ]

    def ends_on_camera(self, camera_id: str, through_ms: int | None) -> list[DueEnd]:
        """Episodes on `camera_id` whose candidate was published, not reported ended at their present
        count of hits, and whose latest hit is more than the gap before `through_ms`, an event time
        of that camera (None: the camera's source has ended, so every one of them has). For the
        embedded mode: it reads a file faster or slower than it was filmed, so only the camera's
        own clock says when a face has gone."""
        now_ms = int(self._clock() * 1000)
        return [
            due
            for key, partition, e in self._published(camera_id)
            if (through_ms is None or through_ms - int(e["last_ms"]) > self._gap_ms)
            and (due := self._due_end(key, partition, e, now_ms)) is not None
        ]

    def _published(self, camera_id: str | None = None) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(key, partition, episode) of every episode whose candidate was published (on `camera_id`
        only, when given)."""
        for key, record in list(self._state.items()):
            if record is None or (camera_id is not None and key.partition("\x1f")[2] != camera_id):
                continue
            for e in _episodes(record):
                if e.get("emitted", True):
                    yield key, int(record.get("partition", 0)), e

    @staticmethod
    def _due_end(key: str, partition: int, e: dict[str, Any], now_ms: int) -> DueEnd | None:
        """The episode's end to report, or None where it was reported at its present count of hits."""
        if e.get("end_reported_hits") == e["hits"]:
            return None
        identity, _, camera = key.partition("\x1f")
        end = EpisodeEnd(
            candidate_id=e["candidate_id"],
            # kept since 2026-12-07; before, derived as Candidate.open_episode derives it
            episode_id=e.get("episode_id") or stable_id("episode", identity, camera, e["opened_by"]),
            identity=identity,
            camera_id=camera,
            zone=e.get("zone"),
            authorisation_id=str(e.get("authorisation_id", "")),
            first_seen_ms=int(e["first_ms"]),
            last_seen_ms=int(e["last_ms"]),
            hits=int(e["hits"]),
            best_score=float(e["best_score"]),
            ended_at_ms=now_ms,
        )
        return DueEnd(end, key, partition)

    def end_reported(self, due: DueEnd) -> None:
        """`due.end` is in `episodes.ended`: the episode is not due again until it has more hits."""
        episodes = _episodes(self._state.get(due.key))
        marked = [
            {**e, "end_reported_hits": due.end.hits} if e["candidate_id"] == due.end.candidate_id else e
            for e in episodes
        ]
        if marked != episodes:
            self._write(due.key, {"episodes": marked, "partition": due.partition}, due.partition)

    def _save(self, key: str, episodes: list[dict[str, Any]], partition: int) -> None:
        self._state[key] = {"episodes": episodes, "partition": partition}


class EpisodeStage:
    """The tracker as a pipeline stage, for the embedded mode and tests. It counts nothing itself:
    its runner counts the candidates as its outputs (facestream_stage_outputs_total), and
    facestream_candidates_total is the matcher's episode step's (runtime/episodes_steps.py)."""

    name = "episodes"

    def __init__(self, tracker: EpisodeTracker) -> None:
        self._tracker = tracker

    def process(self, items: Sequence[Hit]) -> list[list[Candidate] | InvalidMessage]:
        outcomes: list[list[Candidate] | InvalidMessage] = []
        for hit in items:
            candidate = self._tracker.observe(hit)
            outcomes.append([candidate] if candidate is not None else [])
        return outcomes
