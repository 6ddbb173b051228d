"""The match policy: which entries may match a face, decided per camera and frame time.

Implements stages.match.MatchPolicy. A face is not searched at all while a suspension rule
covers its camera; otherwise the search is limited, inside the Milvus filter, to the entries
of authorisations that are active, in validity at the frame's time and in scope for the
camera. Revocations, new grants and rule changes take effect at the next batch: `refresh()`
re-reads the state files when they change (a stat per batch).

"In validity" means: the search happens inside the authorisation's validity window, and the
frame was not captured after it ended (Authorisation.permits). A suspension rule holds
both ways: nothing is matched while it is in effect, and footage captured while it was in
effect (a demonstration) is never matched, whenever it is searched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.accountability.rules import RuleStore, SuspensionRule
from facestream.accountability.zones import CameraZones


@dataclass
class PolicyCounts:
    """What the policy decided over a run, for the audit record of a search."""

    faces: int = 0
    suspended: int = 0
    authorisations: set[str] = field(default_factory=set)
    cameras: set[str] = field(default_factory=set)


class AccountablePolicy:
    def __init__(
        self,
        authorisations: AuthorisationStore,
        rules: RuleStore,
        zones: CameraZones,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._now_ms = 0
        self._authorisations = authorisations
        self._rules = rules
        self._zones = zones
        self._active: list[Authorisation] = []
        self._rule_list: list[SuspensionRule] = []
        self.counts = PolicyCounts()
        self.refresh()

    def refresh(self) -> None:
        self._now_ms = int(self._clock() * 1000)
        self._active = [a for a in self._authorisations.all().values() if a.status == "active"]
        self._rule_list = list(self._rules.all())
        self._zones.refresh()

    def suspended(self, camera_id: str, at_ms: int) -> bool:
        self.counts.faces += 1
        self.counts.cameras.add(camera_id)
        zone = self._zones.zone_of(camera_id)
        if any(
            rule.covers(camera_id, zone, at_ms) or rule.covers(camera_id, zone, self._now_ms)
            for rule in self._rule_list
        ):
            self.counts.suspended += 1
            return True
        return False

    def allowed_authorisations(self, camera_id: str, at_ms: int) -> list[str]:
        zone = self._zones.zone_of(camera_id)
        allowed = sorted(
            a.id for a in self._active if a.permits(at_ms, self._now_ms) and a.covers(camera_id, zone)
        )
        self.counts.authorisations.update(allowed)
        return allowed

    def zone_of(self, camera_id: str) -> str | None:
        return self._zones.zone_of(camera_id)
