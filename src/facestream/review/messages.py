"""The two messages of the review layer: a reviewer's decision (`reviews`) and a confirmed alert
(`alerts.confirmed`). Like facestream.messages: frozen, one type per topic, ids from content."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from facestream.messages import BBox, FrameRef, stable_id

Verdict = Literal["confirm", "reject"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
CANDIDATE_ID = re.compile(r"^[0-9a-f]{24}$")
"""What `stable_id` makes: anything else is not a candidate id (and never reaches a table or a path)."""


def alert_id_for(candidate_id: str) -> str:
    """Stable: the alert of a candidate always has the same id, so a redelivery is recognisable."""
    return stable_id("alert", candidate_id)


@dataclass(frozen=True, slots=True)
class Decision:
    """One reviewer's confirm or reject of one candidate: the payload of `reviews`."""

    decision_id: str
    candidate_id: str
    reviewer: str
    decision: Verdict
    decided_at_ms: int

    @classmethod
    def new(cls, candidate_id: str, reviewer: str, decision: Verdict, at_ms: int) -> Decision:
        return cls(secrets.token_hex(12), candidate_id, reviewer, decision, at_ms)

    @property
    def key(self) -> bytes:
        return self.candidate_id.encode()


@dataclass(frozen=True, slots=True)
class Alert:
    """A candidate two different reviewers confirmed: the payload of `alerts.confirmed`."""

    alert_id: str
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
    confirmed_at_ms: int
    confirmed_by: tuple[str, ...]
    zone: str | None
    """The camera's zone when the face was matched (messages.FaceMatch.zone)."""

    @property
    def key(self) -> bytes:
        return self.alert_id.encode()
