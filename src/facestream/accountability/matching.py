"""The matcher service's MatchStage, under the match policy, with the periodic purge.

The matcher owns the gallery (with Milvus Lite, the only process that may), so it is also
where ended authorisations' vectors are erased: a sweep when it starts, then one every
`--purge-interval-s` on a daemon thread. It learns grants, revocations and rules from the
state directory (`--state-dir`, default the gallery directory) at every batch, and camera
zones from `--cameras-file`. See docs/accountability.md for what Kafka mode does not cover.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facestream.accountability.audit import open_audit_log
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.policy import AccountablePolicy
from facestream.accountability.purge import Purger, PurgeScheduler
from facestream.accountability.rules import RuleStore
from facestream.accountability.settings import AccountabilitySettings, PolicySettings, state_dir_of
from facestream.accountability.zones import CameraZones
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings, MatcherSettings
from facestream.stages.match import MatchStage

log = logging.getLogger(__name__)

SETTINGS = (AccountabilitySettings, PolicySettings)
"""Settings models the matcher service adds to its own."""


@dataclass(frozen=True)
class Matching:
    """The matcher's stage with what it owns: the gallery and the purge thread."""

    stage: MatchStage
    gallery: Gallery
    scheduler: PurgeScheduler

    def close(self) -> None:
        self.scheduler.stop()
        self.gallery.close()


def open_matching(settings: Mapping[type, Any]) -> Matching:
    gallery_s: GallerySettings = settings[GallerySettings]
    matcher_s: MatcherSettings = settings[MatcherSettings]
    policy_s: PolicySettings = settings[PolicySettings]
    state_dir = state_dir_of(gallery_s, settings[AccountabilitySettings])
    gallery = Gallery(gallery_s)
    try:
        purger = Purger(state_dir, open_audit_log(state_dir), gallery)
        purger.sweep()
        policy = AccountablePolicy(
            AuthorisationStore(state_dir),
            RuleStore(state_dir),
            CameraZones(cameras_file=policy_s.cameras_file),
        )
    except BaseException:
        gallery.close()
        raise
    scheduler = PurgeScheduler(purger, policy_s.purge_interval_s)
    scheduler.start()
    log.info("match policy from %s; purge every %.0fs", state_dir, policy_s.purge_interval_s)
    stage = MatchStage(gallery, threshold=matcher_s.match_threshold, top_k=matcher_s.top_k, policy=policy)
    return Matching(stage, gallery, scheduler)


def build_match_stage(settings: Mapping[type, Any]) -> MatchStage:
    """For the matcher service: the process owns gallery and purge thread until it exits."""
    return open_matching(settings).stage
