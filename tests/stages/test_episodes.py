"""The episode tracker: one candidate per episode, no repeat of a hit (redelivered, replayed)
ever adds one, no record's timestamp (far future, far past, out of order) hides another hit;
state of episodes long unseen is deleted."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facestream.messages import Candidate, Hit
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


def test_an_end_is_marked_through_write_with_its_partition_and_an_old_record_still_ends() -> None:
    """The end timer runs outside the hits' processing (a faust table there takes no write without
    an event): the mark goes through `write`, naming the key's partition. An episode stored before
    ends were reported (no episode_id, zone or authorisation kept) still ends, its id derived."""
    clock = Clock(1_000.0)
    state: dict[str, Any] = {}
    writes: list[tuple[str, int]] = []
    tracker = EpisodeTracker(
        state,
        gap_ms=GAP_MS,
        clock=clock,
        write=lambda key, record, partition: writes.append((key, partition)),
    )
    opening = hit(T0)
    opened = tracker.track(opening, partition=4)
    assert opened is not None
    tracker.confirm(opening)
    for e in state[opening.episode_key]["episodes"]:  # as a record written before 2026-12-07
        for kept_since in ("episode_id", "zone", "authorisation_id"):
            del e[kept_since]
    clock.now += GAP_MS / 1000

    (due,) = tracker.ends_due()
    assert (due.end.episode_id, due.end.zone, due.end.authorisation_id) == (
        opened.candidate.episode_id,
        None,
        "",
    )
    assert (due.key, due.partition) == (opening.episode_key, 4)
    tracker.end_reported(due)
    assert writes == [(opening.episode_key, 4)]


def test_by_a_cameras_own_clock_an_episode_ends_after_the_gap_without_a_hit_and_is_reported_once() -> None:
    """The embedded mode's ends: a frame of the camera captured more than the gap after the
    episode's last hit ends it (another camera's frames do not), the source's end ends every one,
    and an end is reported once at its count of hits. The wall clock plays no part."""
    clock = Clock(1_000.0)
    tracker = EpisodeTracker({}, gap_ms=GAP_MS, clock=clock)
    gate = tracker.observe(hit(T0))
    tracker.observe(hit(T0 + 1_000))
    square = tracker.observe(hit(T0, camera="square"))
    tracker.track(hit(T0, camera="yard"))  # opened, never published: it has no end to report
    assert gate is not None and square is not None
    clock.now += 3_600  # an hour of wall clock: reading a file slowly ends nothing
    assert tracker.ends_on_camera("gate", T0 + 1_000 + GAP_MS) == []  # exactly the gap: still on

    (due,) = tracker.ends_on_camera("gate", T0 + 1_001 + GAP_MS)
    assert (due.end.candidate_id, due.end.camera_id, due.end.hits) == (gate.candidate_id, "gate", 2)
    assert (due.end.first_seen_ms, due.end.last_seen_ms) == (T0, T0 + 1_000)
    assert due.end.ended_at_ms == int(clock.now * 1000)
    tracker.end_reported(due)
    assert tracker.ends_on_camera("gate", T0 + 60_000) == []  # once
    assert tracker.ends_on_camera("gate", None) == []

    (at_end,) = tracker.ends_on_camera("square", None)  # its source ended: no later frame needed
    assert at_end.end.candidate_id == square.candidate_id
    assert tracker.ends_on_camera("yard", None) == []


def test_a_replay_opens_nothing_and_a_late_hit_of_no_remembered_episode_opens_its_own() -> None:
    """A file camera sampled again from its start replays the first episode after the second:
    its hits carry their original times, so they fall in the episodes they were part of. A hit
    at a time no remembered episode covers (a clock stepped back) is not a replay: it opens."""
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    first = tracker.observe(hit(T0))
    tracker.observe(hit(T0 + 1_000))
    second = tracker.observe(hit(T0 + 20_000))
    assert first is not None and second is not None and first != second

    replayed = [tracker.observe(hit(T0 + ms)) for ms in (0, 1_000, 20_000)]
    assert replayed == [None, None, None]
    assert tracker.observe(hit(T0 + 500)) is None  # inside the first episode, after the second
    assert tracker.observe(hit(T0 + 21_000)) is None  # the later episode goes on

    late = tracker.observe(hit(T0 + 9_000))
    third = tracker.observe(hit(T0 + 40_000))
    assert late is not None and third is not None
    assert len({c.candidate_id for c in (first, second, late, third)}) == 4


def test_a_future_dated_record_hides_no_later_hit() -> None:
    """The finding of issue 12: one hit dated 2096, then the person's genuine hits on that camera."""
    future = 4_000_000_000_000  # 2096
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    assert tracker.observe(hit(future)) is not None

    genuine = tracker.observe(hit(T0))
    assert genuine is not None and genuine.ref.captured_at_ms == T0
    assert tracker.observe(hit(T0 + 1_000)) is None  # the genuine episode goes on
    later = tracker.observe(hit(T0 + 100_000))
    assert later is not None and later.ref.captured_at_ms == T0 + 100_000


def test_a_record_ahead_within_any_skew_window_hides_no_later_hit() -> None:
    """Two minutes ahead passes a detector that allows five: the genuine hits that follow it,
    more than the gap earlier, are an episode of their own."""
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    ahead = tracker.observe(hit(T0 + 120_000))
    genuine = tracker.observe(hit(T0))
    assert ahead is not None and genuine is not None and genuine.ref.captured_at_ms == T0


def test_a_far_past_or_out_of_order_record_hides_no_later_hit() -> None:
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    genuine = tracker.observe(hit(T0))
    far_past = tracker.observe(hit(86_400_000))  # 2 January 1970
    out_of_order = tracker.observe(hit(T0 - 50_000))
    assert genuine is not None and far_past is not None and out_of_order is not None

    assert tracker.observe(hit(T0 + 2_000)) is None  # still the genuine episode
    later = tracker.observe(hit(T0 + 60_000))
    assert later is not None and later.ref.captured_at_ms == T0 + 60_000


def test_beyond_its_limit_the_least_recently_seen_episode_is_forgotten() -> None:
    tracker = EpisodeTracker({}, gap_ms=GAP_MS, max_episodes=3)
    opened = [tracker.observe(hit(T0 + s * 100_000)) for s in range(3)]  # episodes 0, 1, 2
    assert None not in opened
    assert tracker.observe(hit(T0 + 1_000)) is None  # episode 0 seen again: the most recent now
    assert tracker.observe(hit(T0 + 300_000)) is not None  # a fourth: episode 1 is forgotten

    assert tracker.observe(hit(T0)) is None  # kept
    assert tracker.observe(hit(T0 + 200_000)) is None  # kept
    reopened = tracker.observe(hit(T0 + 100_000))  # forgotten: a replay of it opens it again
    assert reopened is not None and opened[1] is not None
    assert reopened.candidate_id == opened[1].candidate_id  # under the same id, for consumers


def test_an_episode_recorded_before_several_were_kept_goes_on() -> None:
    """A changelog written by the previous version holds one episode per key at its top level."""
    opening = hit(T0)
    state: dict[str, Any] = {
        opening.episode_key: {
            "candidate_id": "c-old",
            "opened_by": opening.hit_id,
            "first_ms": T0,
            "last_ms": T0 + 1_000,
            "hits": 2,
            "best_score": 0.8,
            "emitted": False,
            "opened_at_ms": 5_000,
            "seen_at_ms": 5_000,
            "partition": 2,
        }
    }
    tracker = EpisodeTracker(state, gap_ms=GAP_MS, clock=Clock(10.0))

    again = tracker.track(opening, partition=2)
    assert again is not None and again.repeat and again.opened_at_ms == 5_000
    tracker.confirm(opening)
    assert tracker.track(opening, partition=2) is None
    assert tracker.track(hit(T0 + 3_000), partition=2) is None  # within the gap of its last hit
    assert tracker.track(hit(T0 + 60_000), partition=2) is not None
    assert tracker.expire(seen_before_ms=20_000, partition=2) == 2 and state == {}


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


# -- properties ---------------------------------------------------------------------------------------

SPAN_MS = 600_000
"""Plausible times: T0 to T0 + 10 minutes. Wild ones lie more than the gap outside."""
KEYS = [("obama", "gate"), ("obama", "square"), ("biden", "gate")]
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

plausible_times = st.integers(0, SPAN_MS // 500).map(lambda n: T0 + 500 * n)  # a grid: near and equal times
wild_times = st.one_of(
    st.integers(-(2**62), T0 - GAP_MS - 1),
    st.integers(T0 + SPAN_MS + GAP_MS + 1, 2**62),
    st.sampled_from([0, 4_000_000_000_000, T0 - GAP_MS - 1, T0 + SPAN_MS + GAP_MS + 1]),
)
hit_sequences = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(plausible_times, wild_times)), max_size=30
).map(lambda drawn: [hit(at, camera=camera, identity=identity) for (identity, camera), at in drawn])


def plausible(at_ms: int) -> bool:
    return T0 <= at_ms <= T0 + SPAN_MS


def observed(tracker: EpisodeTracker, hits: list[Hit]) -> list[Candidate | None]:
    return [tracker.observe(h) for h in hits]


@PROPERTY
@given(hit_sequences)
def test_a_hit_opens_an_episode_exactly_when_nothing_of_its_key_came_before_within_the_gap(
    hits: list[Hit],
) -> None:
    """The whole rule, independent of order and of every other time: so a record far off
    (future, past) can only silence hits within the gap of its own time."""
    outcomes = observed(EpisodeTracker({}, gap_ms=GAP_MS), hits)

    for i, (h, outcome) in enumerate(zip(hits, outcomes, strict=True)):
        earlier_near = any(
            e.episode_key == h.episode_key and abs(e.ref.captured_at_ms - h.ref.captured_at_ms) <= GAP_MS
            for e in hits[:i]
        )
        assert (outcome is None) == earlier_near, (i, h.ref.captured_at_ms)
        assert outcome is None or (outcome.ref == h.ref and outcome.identity == h.identity)


@PROPERTY
@given(hit_sequences)
def test_wild_timestamps_change_nothing_for_the_plausible_hits_and_a_replay_adds_nothing(
    hits: list[Hit],
) -> None:
    tracker = EpisodeTracker({}, gap_ms=GAP_MS)
    with_wild = [c for c in observed(tracker, hits) if c is not None]
    sane = [h for h in hits if plausible(h.ref.captured_at_ms)]
    alone = [c for c in observed(EpisodeTracker({}, gap_ms=GAP_MS), sane) if c is not None]

    assert [c for c in with_wild if plausible(c.ref.captured_at_ms)] == alone
    seen = {h.episode_key for h in sane}
    assert {f"{c.identity}\x1f{c.ref.camera_id}" for c in alone} == seen  # every one gets a candidate
    assert observed(tracker, hits) == [None] * len(hits)  # the same records again: nothing new
