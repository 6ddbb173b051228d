"""The matcher service's MatchStage, under the match policy, with the periodic purge.

The matcher owns the gallery (with Milvus Lite, the only process that may), so it is also
where ended authorisations' vectors are erased: a sweep when it starts, then one every
`--purge-interval-s` on a daemon thread. It learns grants, revocations and rules from the
state directory (`--state-dir`, default the gallery directory) at every batch, and camera
zones from `--cameras-file`. See docs/accountability.md for what Kafka mode does not cover.

On Kafka (the settings hold KafkaSettings: the matcher service) the purge's audit records go
to the state directory's file log and to the `audit` topic (audit_mirror.py, writer
`matcher-<replica or host>`); `Matching.close()` seals that chain.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from facestream.accountability.audit import open_audit_log
from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.audit_mirror import AuditMirror, open_audit_mirror, writer_name
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.policy import AccountablePolicy
from facestream.accountability.purge import Purger, PurgeScheduler
from facestream.accountability.rules import RuleStore
from facestream.accountability.settings import AccountabilitySettings, PolicySettings, state_dir_of
from facestream.accountability.zones import CameraZones
from facestream.gallery.store import Gallery
from facestream.runtime.metrics import MatcherMetrics
from facestream.settings import GallerySettings, KafkaSettings, MatcherSettings, RuntimeSettings, Settings
from facestream.stages.match import MatchStage

log = logging.getLogger(__name__)

SETTINGS = (AccountabilitySettings, PolicySettings, AUDIT_SIGNING)
"""Settings models the matcher service adds to its own (of the audit log's, what signs the purge's
records: the verifiers' public key is not its business)."""


@dataclass(frozen=True)
class Matching:
    """The matcher's stage with what it owns: the gallery, the purge thread, the Kafka audit chain."""

    stage: MatchStage
    gallery: Gallery
    scheduler: PurgeScheduler
    mirror: AuditMirror | None = None

    def close(self) -> None:
        """Stop purging, then seal the audit chain (AuditError if Kafka cannot take the seal)."""
        self.scheduler.stop()
        try:
            if self.mirror is not None:
                self.mirror.close()
        finally:
            self.gallery.close()


def open_matching(settings: Settings, metrics: MatcherMetrics | None = None) -> Matching:
    """The stage counts into `metrics`: the matcher service passes the exported group. The purge's
    records are signed as `settings[AuditSettings]` say (required: no env-only fallback)."""
    gallery_s = settings[GallerySettings]
    matcher_s = settings[MatcherSettings]
    policy_s = settings[PolicySettings]
    audit_s = settings[AuditSettings]
    state_dir = state_dir_of(gallery_s, settings[AccountabilitySettings])
    with ExitStack() as opened:  # closed again if anything below fails
        mirror = _open_mirror(state_dir, settings, audit_s)
        if mirror is not None:
            opened.callback(mirror.close)
        gallery = Gallery(gallery_s)
        opened.callback(gallery.close)
        purger = Purger(state_dir, mirror or open_audit_log(state_dir, audit_s), gallery)
        purger.sweep()
        policy = AccountablePolicy(
            AuthorisationStore(state_dir),
            RuleStore(state_dir),
            CameraZones(cameras_file=policy_s.cameras_file),
        )
        opened.pop_all()
    scheduler = PurgeScheduler(purger, policy_s.purge_interval_s)
    scheduler.start()
    log.info("match policy from %s; purge every %.0fs", state_dir, policy_s.purge_interval_s)
    stage = MatchStage(
        gallery, threshold=matcher_s.match_threshold, top_k=matcher_s.top_k, policy=policy, metrics=metrics
    )
    return Matching(stage, gallery, scheduler, mirror)


def _open_mirror(state_dir: Path, settings: Settings, audit: AuditSettings) -> AuditMirror | None:
    """On Kafka, the file log plus this replica's chain on the audit topic; else None (file log only)."""
    kafka = settings.get(KafkaSettings)
    if kafka is None:
        return None
    runtime = settings.get(RuntimeSettings)
    return open_audit_mirror(
        state_dir, kafka, audit, writer_name("matcher", runtime.replica_id if runtime else None)
    )
