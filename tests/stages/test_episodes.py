"""The episode tracker: one candidate per episode, and no repeat of a hit (redelivered, replayed)
ever adds one; state of episodes long unseen is deleted."""

from __future__ import annotations

from typing import Any

from facestream.messages import Hit
from facestream.stages.episodes import EpisodeStage, EpisodeTracker
from tests.fixtures.clock import Clock
from tests.fixtures.hits import make_hit

T0 = 1_700_000_000_000
GAP_MS = 3_000


def hit(at_ms: int, camera: str = "gate", identity: str = "obama") -> Hit:
    return make_hit(camera, at_ms, identity)


def test_an_unconfirmed_opening_comes_back_as_a_repeat_and_a_confirmed_one_not_at_all() -> None:
    clock = Clock(1_000.0)
    tracker = EpisodeTracker({}, gap_ms=GAP_MS, clock=clock)
    opening = hit(T0)

    first = tracker.track(opening)
    assert first is not None and not first.repeat and first.opened_at_ms == 1_000_000

    clock.now += 5  # crashed before confirming: the hit is redelivered
    again = tracker.track(opening)
    assert again is not None and again.repeat
    assert again.candidate.candidate_id == first.candidate.candidate_id
    assert again.opened_at_ms == first.opened_at_ms  # where to look for the candidate in `matches`

    tracker.confirm(opening)
    assert tracker.track(opening) is None
    assert tracker.track(hit(T0 + 500)) is None  # the same episode goes on


def test_an_old_hit_after_a_later_episode_opens_nothing() -> None:
    """A file camera sampled again from its start replays the first episode after the second."""
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    first = tracker.observe(hit(T0))
    tracker.observe(hit(T0 + 1_000))
    second = tracker.observe(hit(T0 + 20_000))
    assert first is not None and second is not None and first != second

    replayed = [tracker.observe(hit(T0 + ms)) for ms in (0, 500, 1_000, 9_000)]

    assert replayed == [None, None, None, None]
    assert tracker.observe(hit(T0 + 21_000)) is None  # the later episode goes on
    third = tracker.observe(hit(T0 + 40_000))
    assert third is not None and third.candidate_id not in {first.candidate_id, second.candidate_id}


def test_episodes_per_identity_and_camera() -> None:
    stage = EpisodeStage(EpisodeTracker({}, gap_ms=GAP_MS))
    hits = [hit(T0), hit(T0, identity="biden"), hit(T0, camera="square"), hit(T0 + 100)]

    outcomes = stage.process(hits)

    assert [len(o) for o in outcomes if isinstance(o, list)] == [1, 1, 1, 0]


def test_expire_deletes_only_episodes_unseen_long_enough_and_only_of_the_partition_asked() -> None:
    clock = Clock(1_000.0)
    state: dict[str, Any] = {}
    tracker = EpisodeTracker(state, gap_ms=GAP_MS, clock=clock)
    tracker.track(hit(T0, camera="a"), partition=0)
    tracker.track(hit(T0, camera="b"), partition=1)
    clock.now += 100
    tracker.track(hit(T0, camera="c"), partition=0)
    tracker.track(hit(T0 + 100, camera="a"), partition=0)  # seen again: kept

    assert tracker.expire(seen_before_ms=1_050_000, partition=0) == 0
    clock.now += 100
    tracker.track(hit(T0 + 200, camera="c"), partition=0)
    assert tracker.expire(seen_before_ms=1_150_000, partition=0) == 1  # a, last seen at 1_100 s

    assert sorted(k.split("\x1f")[1] for k in state) == ["b", "c"]
    assert tracker.expire(seen_before_ms=1_150_000) == 1  # b, any partition
    assert sorted(k.split("\x1f")[1] for k in state) == ["c"]
