"""The two-person rule as plain code: a candidate's review state, and what each decision does to it.

A candidate enters review *pending*. It becomes *confirmed* (and an alert) only when
`confirmations` (at least two) *different* reviewers have confirmed it; the same reviewer
confirming again counts once. Any rejection closes it as *rejected*, and later confirmations
are refused. A candidate not decided within the review window, or whose authorisation is no
longer in force, *expires*. A decision on an unknown or closed candidate is refused.

Like the episode tracker, the state is a `MutableMapping` (candidate id -> JSON-able dict):
a dict in tests, a faust Table in the service, so a restart loses no decision. The methods
that decide (`admit`, `judge`, `due`) only compute; the caller audits the result first and
then `save`s it, so nothing changes that the audit log does not show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from facestream.errors import FacestreamError
from facestream.messages import BBox, Candidate, FrameRef
from facestream.review.messages import Alert, Decision, alert_id_for

State = MutableMapping[str, Any]
"""candidate id -> CandidateReview.to_json(); a faust Table with a JSON value serializer fits."""
Status = Literal["pending", "confirmed", "rejected", "expired"]
Refusal = Literal["unknown", "closed", "expired", "not_authorised"]
Authorised = Callable[[str, int], bool]
"""(authorisation id, now ms) -> may a candidate under it still be confirmed?"""
MIN_CONFIRMATIONS = 2


class DecisionRefused(FacestreamError):
    """A decision that cannot be applied: unknown or closed candidate, window passed, authorisation ended."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason: Refusal = reason


@dataclass(frozen=True, slots=True)
class Vote:
    """Who decided, in which role, when, and which submission it was."""

    reviewer: str
    role: str
    at_ms: int
    decision_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer,
            "role": self.role,
            "at_ms": self.at_ms,
            "decision_id": self.decision_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vote:
        return cls(str(data["reviewer"]), str(data["role"]), int(data["at_ms"]), str(data["decision_id"]))


@dataclass(frozen=True, slots=True)
class CandidateReview:
    """A candidate under review: the match (ids, labels, score: never the image) and its decisions."""

    candidate_id: str
    episode_id: str
    ref: FrameRef
    face_index: int
    bbox: BBox
    score: float
    identity: str
    entry_id: str
    authorisation_id: str
    model_id: str
    opened_at_ms: int
    expires_at_ms: int
    zone: str | None
    status: Status = "pending"
    confirmations: tuple[Vote, ...] = ()
    rejection: Vote | None = None
    closed_at_ms: int | None = None
    close_reason: str | None = None
    """Why it expired: `window` or `authorisation_ended`."""

    @classmethod
    def of(cls, candidate: Candidate, now_ms: int, window_ms: int) -> CandidateReview:
        return cls(
            candidate_id=candidate.candidate_id,
            episode_id=candidate.episode_id,
            ref=candidate.ref,
            face_index=candidate.face_index,
            bbox=candidate.bbox,
            score=candidate.score,
            identity=candidate.identity,
            entry_id=candidate.entry_id,
            authorisation_id=candidate.authorisation_id,
            model_id=candidate.model_id,
            opened_at_ms=now_ms,
            expires_at_ms=now_ms + window_ms,
            zone=candidate.zone,
        )

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def confirmed_by(self) -> tuple[str, ...]:
        return tuple(v.reviewer for v in self.confirmations)

    @property
    def alert_id(self) -> str:
        return alert_id_for(self.candidate_id)

    def alert(self) -> Alert:
        """The confirmed alert; only a confirmed candidate has one."""
        if self.status != "confirmed" or self.closed_at_ms is None:
            raise ValueError(f"candidate {self.candidate_id} is {self.status}, not confirmed")
        return Alert(
            alert_id=self.alert_id,
            candidate_id=self.candidate_id,
            episode_id=self.episode_id,
            ref=self.ref,
            face_index=self.face_index,
            bbox=self.bbox,
            score=self.score,
            identity=self.identity,
            entry_id=self.entry_id,
            authorisation_id=self.authorisation_id,
            model_id=self.model_id,
            opened_at_ms=self.opened_at_ms,
            confirmed_at_ms=self.closed_at_ms,
            confirmed_by=self.confirmed_by,
            zone=self.zone,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "candidate_id": self.candidate_id,
            "episode_id": self.episode_id,
            "camera_id": self.ref.camera_id,
            "frame_id": self.ref.frame_id,
            "captured_at_ms": self.ref.captured_at_ms,
            "source": self.ref.source,
            "face_index": self.face_index,
            "bbox": [self.bbox.x1, self.bbox.y1, self.bbox.x2, self.bbox.y2],
            "score": self.score,
            "identity": self.identity,
            "entry_id": self.entry_id,
            "authorisation_id": self.authorisation_id,
            "model_id": self.model_id,
            "opened_at_ms": self.opened_at_ms,
            "expires_at_ms": self.expires_at_ms,
            "zone": self.zone,
            "status": self.status,
            "confirmations": [v.to_json() for v in self.confirmations],
            "rejection": None if self.rejection is None else self.rejection.to_json(),
            "closed_at_ms": self.closed_at_ms,
            "close_reason": self.close_reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CandidateReview:
        rejection = data.get("rejection")
        return cls(
            candidate_id=data["candidate_id"],
            episode_id=data["episode_id"],
            ref=FrameRef(data["camera_id"], data["frame_id"], int(data["captured_at_ms"]), data["source"]),
            face_index=int(data["face_index"]),
            bbox=BBox(*(float(v) for v in data["bbox"])),
            score=float(data["score"]),
            identity=data["identity"],
            entry_id=data["entry_id"],
            authorisation_id=data["authorisation_id"],
            model_id=data["model_id"],
            opened_at_ms=int(data["opened_at_ms"]),
            expires_at_ms=int(data["expires_at_ms"]),
            zone=data.get("zone"),  # absent from a review stored before zones were carried
            status=data["status"],
            confirmations=tuple(Vote.from_json(v) for v in data.get("confirmations", [])),
            rejection=None if rejection is None else Vote.from_json(rejection),
            closed_at_ms=data.get("closed_at_ms"),
            close_reason=data.get("close_reason"),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one accepted decision does: the review after it, and whether it changed anything."""

    decision: Decision
    vote: Vote
    review: CandidateReview
    counted: bool
    """False when this reviewer had already confirmed: the repeat counts once, nothing changes."""

    @property
    def alert(self) -> Alert | None:
        """The alert this decision made, if it was the deciding confirmation."""
        if self.counted and self.review.status == "confirmed":
            return self.review.alert()
        return None


def _always(_authorisation_id: str, _now_ms: int) -> bool:
    return True


class ReviewBook:
    def __init__(
        self,
        state: State,
        *,
        window_ms: int,
        keep_closed_ms: int = 0,
        confirmations: int = MIN_CONFIRMATIONS,
        authorised: Authorised = _always,
    ) -> None:
        if confirmations < MIN_CONFIRMATIONS:
            raise ValueError(f"the two-person rule needs at least {MIN_CONFIRMATIONS} confirmations")
        self._state = state
        self.window_ms = window_ms
        self.keep_closed_ms = keep_closed_ms
        self.confirmations = confirmations
        self._authorised = authorised

    # -- reading ---------------------------------------------------------------------------

    def get(self, candidate_id: str) -> CandidateReview | None:
        data = self._state.get(candidate_id)
        return None if data is None else CandidateReview.from_json(data)

    def reviews(self) -> Iterator[CandidateReview]:
        for data in list(self._state.values()):
            if data is not None:
                yield CandidateReview.from_json(data)

    def pending(self) -> list[CandidateReview]:
        """Candidates waiting for a decision, oldest first."""
        waiting = [r for r in self.reviews() if r.pending]
        return sorted(waiting, key=lambda r: (r.opened_at_ms, r.candidate_id))

    def closed(self) -> list[CandidateReview]:
        """Decided or expired candidates still remembered, most recent first."""
        done = [r for r in self.reviews() if not r.pending]
        return sorted(done, key=lambda r: (r.closed_at_ms or 0, r.candidate_id), reverse=True)

    # -- deciding (pure: nothing is written until `save`) -------------------------------------

    def admit(self, candidate: Candidate, now_ms: int) -> CandidateReview | None:
        """The new review of a candidate, or None when it is known (a redelivered candidate)."""
        if candidate.candidate_id in self._state:
            return None
        return CandidateReview.of(candidate, now_ms, self.window_ms)

    def judge(self, decision: Decision, role: str, now_ms: int) -> Outcome:
        """What `decision` (by a reviewer acting in `role`) does; DecisionRefused when it cannot apply."""
        review = self.get(decision.candidate_id)
        if review is None:
            raise DecisionRefused("unknown", f"no candidate {decision.candidate_id} is under review")
        if not review.pending:
            raise DecisionRefused("closed", f"candidate {review.candidate_id} is already {review.status}")
        which = f"candidate {review.candidate_id}"
        if decision.decided_at_ms >= review.expires_at_ms or now_ms >= review.expires_at_ms:
            raise DecisionRefused("expired", f"the review window of {which} has ended")
        if not self._authorised(review.authorisation_id, now_ms):
            raise DecisionRefused(
                "not_authorised", f"authorisation {review.authorisation_id} of {which} is no longer in force"
            )
        vote = Vote(decision.reviewer, role, decision.decided_at_ms, decision.decision_id)
        if decision.decision == "reject":
            closed = replace(review, status="rejected", rejection=vote, closed_at_ms=now_ms)
            return Outcome(decision, vote, closed, counted=True)
        if decision.reviewer in review.confirmed_by:
            return Outcome(decision, vote, review, counted=False)
        confirmed = replace(review, confirmations=(*review.confirmations, vote))
        if len(confirmed.confirmations) >= self.confirmations:
            confirmed = replace(confirmed, status="confirmed", closed_at_ms=now_ms)
        return Outcome(decision, vote, confirmed, counted=True)

    def due(self, now_ms: int) -> list[CandidateReview]:
        """Pending candidates that must expire now (window over, or authorisation ended), as expired."""
        out = []
        for review in self.pending():
            if now_ms >= review.expires_at_ms:
                reason = "window"
            elif not self._authorised(review.authorisation_id, now_ms):
                reason = "authorisation_ended"
            else:
                continue
            out.append(replace(review, status="expired", closed_at_ms=now_ms, close_reason=reason))
        return out

    def stale(self, now_ms: int) -> list[str]:
        """Closed candidates remembered long enough: their records can go."""
        return [
            r.candidate_id
            for r in self.reviews()
            if not r.pending and r.closed_at_ms is not None and now_ms - r.closed_at_ms >= self.keep_closed_ms
        ]

    # -- writing ---------------------------------------------------------------------------

    def save(self, review: CandidateReview) -> None:
        self._state[review.candidate_id] = review.to_json()

    def forget(self, candidate_id: str) -> None:
        self._state.pop(candidate_id, None)
