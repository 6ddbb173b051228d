"""The two-person rule, exhaustively, on the plain ReviewBook over a dict (what the faust Table holds)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facestream.messages import Candidate
from facestream.review.decisions import CandidateReview, DecisionRefused, ReviewBook
from facestream.review.messages import Decision, Verdict, alert_id_for
from tests.fixtures.hits import make_hit

T0 = 1_800_000_000_000
WINDOW = 60_000


def candidate(camera: str = "cam-1", at_ms: int = T0, identity: str = "obama") -> Candidate:
    return Candidate.open_episode(make_hit(camera, at_ms, identity))


def book(state: dict[str, Any] | None = None, **kwargs: Any) -> ReviewBook:
    return ReviewBook({} if state is None else state, window_ms=WINDOW, **kwargs)


def admitted(b: ReviewBook, c: Candidate, at: int = T0) -> CandidateReview:
    review = b.admit(c, at)
    assert review is not None
    b.save(review)
    return review


def decide(b: ReviewBook, cid: str, reviewer: str, verdict: Verdict, at: int = T0 + 1000) -> CandidateReview:
    outcome = b.judge(Decision.new(cid, reviewer, verdict, at), "reviewer", at)
    if outcome.counted:
        b.save(outcome.review)
    return outcome.review


def test_a_new_candidate_is_pending_until_the_window_ends_and_a_redelivery_is_not_admitted_twice() -> None:
    b, c = book(), candidate()
    review = admitted(b, c)
    assert (review.status, review.opened_at_ms, review.expires_at_ms) == ("pending", T0, T0 + WINDOW)
    assert (review.identity, review.ref.camera_id, review.authorisation_id) == (
        "obama",
        "cam-1",
        c.authorisation_id,
    )
    assert b.admit(c, T0 + 5000) is None
    assert [r.candidate_id for r in b.pending()] == [c.candidate_id]


def test_two_different_reviewers_confirm_and_the_alert_carries_both_and_a_stable_id() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    first = b.judge(Decision.new(c.candidate_id, "rita", "confirm", T0 + 1000), "reviewer", T0 + 1000)
    assert first.counted and first.alert is None and first.review.status == "pending"
    b.save(first.review)
    second = b.judge(Decision.new(c.candidate_id, "rob", "confirm", T0 + 2000), "reviewer", T0 + 2000)
    alert = second.alert
    assert alert is not None and second.review.status == "confirmed"
    assert alert.confirmed_by == ("rita", "rob")
    assert alert.alert_id == alert_id_for(c.candidate_id) == second.review.alert_id
    assert alert_id_for(c.candidate_id) != alert_id_for(candidate(camera="cam-2").candidate_id)
    assert (alert.identity, alert.ref, alert.score, alert.confirmed_at_ms) == (
        "obama",
        c.ref,
        c.score,
        T0 + 2000,
    )
    assert alert.opened_at_ms == T0


def test_the_same_reviewer_twice_counts_once() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    decide(b, c.candidate_id, "rita", "confirm")
    again = b.judge(Decision.new(c.candidate_id, "rita", "confirm", T0 + 3000), "reviewer", T0 + 3000)
    assert not again.counted and again.alert is None
    review = b.get(c.candidate_id)
    assert review is not None and review.status == "pending" and review.confirmed_by == ("rita",)
    assert decide(b, c.candidate_id, "rob", "confirm").status == "confirmed"


def test_a_rejection_closes_the_candidate_and_later_confirmations_are_refused() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    decide(b, c.candidate_id, "rita", "confirm")
    rejected = decide(b, c.candidate_id, "rob", "reject")
    assert rejected.status == "rejected" and rejected.rejection is not None
    assert rejected.rejection.reviewer == "rob"
    with pytest.raises(DecisionRefused) as refused:
        b.judge(Decision.new(c.candidate_id, "ria", "confirm", T0 + 5000), "reviewer", T0 + 5000)
    assert refused.value.reason == "closed"
    with pytest.raises(ValueError):
        rejected.alert()


def test_a_first_rejection_closes_it_without_any_confirmation() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    outcome = b.judge(Decision.new(c.candidate_id, "rita", "reject", T0 + 10), "reviewer", T0 + 10)
    assert outcome.counted and outcome.alert is None and outcome.review.status == "rejected"


def test_a_confirmed_candidate_refuses_further_decisions_including_a_rejection() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    decide(b, c.candidate_id, "rita", "confirm")
    decide(b, c.candidate_id, "rob", "confirm")
    for verdict in ("confirm", "reject"):
        with pytest.raises(DecisionRefused) as refused:
            b.judge(Decision.new(c.candidate_id, "ria", verdict, T0 + 5000), "reviewer", T0 + 5000)  # type: ignore[arg-type]
        assert refused.value.reason == "closed"


def test_a_decision_on_an_unknown_candidate_is_refused() -> None:
    b = book()
    admitted(b, candidate())
    with pytest.raises(DecisionRefused) as refused:
        b.judge(Decision.new("0" * 24, "rita", "confirm", T0), "reviewer", T0)
    assert refused.value.reason == "unknown"


def test_an_undecided_candidate_expires_at_the_end_of_the_window_and_then_refuses_decisions() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    decide(b, c.candidate_id, "rita", "confirm")
    assert b.due(T0 + WINDOW - 1) == []
    with pytest.raises(DecisionRefused) as late:
        b.judge(Decision.new(c.candidate_id, "rob", "confirm", T0 + WINDOW), "reviewer", T0 + WINDOW)
    assert late.value.reason == "expired"
    [expired] = b.due(T0 + WINDOW)
    assert (expired.status, expired.close_reason, expired.closed_at_ms) == ("expired", "window", T0 + WINDOW)
    assert expired.confirmed_by == ("rita",)  # the one confirmation is kept on the record
    b.save(expired)
    assert b.pending() == [] and b.due(T0 + 2 * WINDOW) == []
    with pytest.raises(DecisionRefused) as closed:
        b.judge(Decision.new(c.candidate_id, "rob", "confirm", T0 + 1), "reviewer", T0 + WINDOW + 1)
    assert closed.value.reason == "closed"


def test_a_decision_made_before_the_end_but_applied_after_it_is_refused() -> None:
    b, c = book(), candidate()
    admitted(b, c)
    with pytest.raises(DecisionRefused) as late:
        b.judge(Decision.new(c.candidate_id, "rob", "confirm", T0 + 10), "reviewer", T0 + WINDOW + 5)
    assert late.value.reason == "expired"


def test_when_its_authorisation_ends_a_pending_candidate_expires_and_cannot_be_confirmed() -> None:
    c = candidate()
    in_force = {c.authorisation_id: True}
    b = book(authorised=lambda auth, _now: in_force.get(auth, False))
    admitted(b, c)
    decide(b, c.candidate_id, "rita", "confirm")
    in_force[c.authorisation_id] = False
    with pytest.raises(DecisionRefused) as refused:
        b.judge(Decision.new(c.candidate_id, "rob", "confirm", T0 + 2000), "reviewer", T0 + 2000)
    assert refused.value.reason == "not_authorised"
    [expired] = b.due(T0 + 2000)
    assert (expired.status, expired.close_reason) == ("expired", "authorisation_ended")


def test_more_confirmations_can_be_required_but_never_fewer_than_two() -> None:
    with pytest.raises(ValueError):
        book(confirmations=1)
    b, c = book(confirmations=3), candidate()
    admitted(b, c)
    assert decide(b, c.candidate_id, "a1", "confirm").status == "pending"
    assert decide(b, c.candidate_id, "a2", "confirm").status == "pending"
    assert decide(b, c.candidate_id, "a3", "confirm").status == "confirmed"


def test_closed_candidates_are_forgotten_after_the_keep_time_pending_ones_never() -> None:
    b = book(keep_closed_ms=10_000)
    old, waiting = candidate("cam-1"), candidate("cam-2")
    admitted(b, old)
    admitted(b, waiting)
    rejected = b.judge(Decision.new(old.candidate_id, "rita", "reject", T0 + 100), "reviewer", T0 + 100)
    b.save(rejected.review)
    assert b.stale(T0 + 100 + 9_999) == []
    assert b.stale(T0 + 100 + 10_000) == [old.candidate_id]
    b.forget(old.candidate_id)
    assert b.get(old.candidate_id) is None and b.get(waiting.candidate_id) is not None


def test_the_state_is_plain_json_and_a_new_book_over_it_continues_where_the_old_one_stopped() -> None:
    state: dict[str, Any] = {}
    c = candidate()
    first = book(state)
    admitted(first, c)
    decide(first, c.candidate_id, "rita", "confirm")
    restored = json.loads(json.dumps(state))  # what a changelog replay gives back
    again = book(restored)
    review = again.get(c.candidate_id)
    assert review is not None and review == CandidateReview.from_json(review.to_json())
    assert review.confirmed_by == ("rita",) and review.confirmations[0].role == "reviewer"
    assert decide(again, c.candidate_id, "rob", "confirm").status == "confirmed"


def test_a_review_stored_before_zones_were_carried_continues_with_no_zone() -> None:
    """A changelog written by the previous version holds no `zone`: replayed, the review goes on."""
    state: dict[str, Any] = {}
    c = candidate()
    first = book(state)
    admitted(first, c)
    stored = json.loads(json.dumps(state))
    for value in stored.values():
        if isinstance(value, dict) and value.get("candidate_id") == c.candidate_id:
            assert value.pop("zone") == "city-centre"
    again = book(stored)
    decide(again, c.candidate_id, "rita", "confirm")
    alert = decide(again, c.candidate_id, "rob", "confirm").alert()
    assert (alert.candidate_id, alert.zone) == (c.candidate_id, None)


def test_queue_order_is_oldest_first_and_closed_most_recent_first() -> None:
    b = book()
    c1, c2, c3 = candidate("cam-1"), candidate("cam-2"), candidate("cam-3")
    admitted(b, c2, T0 + 2)
    admitted(b, c1, T0 + 1)
    admitted(b, c3, T0 + 3)
    assert [r.candidate_id for r in b.pending()] == [c1.candidate_id, c2.candidate_id, c3.candidate_id]
    for cid, at in ((c3.candidate_id, T0 + 10), (c1.candidate_id, T0 + 20)):
        b.save(b.judge(Decision.new(cid, "rita", "reject", at), "reviewer", at).review)
    assert [r.candidate_id for r in b.closed()] == [c1.candidate_id, c3.candidate_id]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["rita", "rob", "ria"]), st.sampled_from(["confirm", "reject"])),
        max_size=8,
    )
)
def test_any_sequence_of_decisions_alerts_at_most_once_and_only_after_two_distinct_confirmations(
    decisions: list[tuple[str, Verdict]],
) -> None:
    b, c = book(), candidate()
    admitted(b, c)
    alerts, confirmers, closed = 0, [], False
    for i, (reviewer, verdict) in enumerate(decisions):
        at = T0 + 1 + i
        try:
            outcome = b.judge(Decision.new(c.candidate_id, reviewer, verdict, at), "reviewer", at)
        except DecisionRefused as refused:
            assert closed and refused.reason == "closed"
            continue
        assert not closed
        if outcome.alert is not None:
            alerts += 1
            assert len(set(outcome.alert.confirmed_by)) == 2
            assert set(outcome.alert.confirmed_by) == {*confirmers, reviewer}
        if outcome.counted:
            b.save(outcome.review)
        if verdict == "confirm" and reviewer not in confirmers:
            confirmers.append(reviewer)
        closed = verdict == "reject" or len(confirmers) >= 2
    final = b.get(c.candidate_id)
    assert final is not None
    expected_alert = False
    seen: list[str] = []
    for reviewer, verdict in decisions:
        if verdict == "reject":
            break
        if reviewer not in seen:
            seen.append(reviewer)
        if len(seen) == 2:
            expected_alert = True
            break
    assert alerts == (1 if expected_alert else 0)
    assert (final.status == "confirmed") == expected_alert
