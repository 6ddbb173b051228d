"""What every accountable command does first: find the state, name the actor, sweep.

Commands stay short: `state_dir_from(args)` finds the state directory from the flags,
`audit_for(state_dir, settings_from(args, AuditSettings))` is the audit log, signed as the
command was configured (flags, env, the --config file's `audit:` section), and
`open_gallery(...)` opens the Milvus gallery and runs the purge sweep on it, recorded in that
log (expiry is enforced "whenever the gallery is opened").
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from facestream.accountability.audit import AuditLog, AuditWriter, open_audit_log
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.purge import Purger, SweepReport
from facestream.accountability.settings import AccountabilitySettings, state_dir_of
from facestream.cliargs import settings_from
from facestream.gallery.store import Gallery, is_server_uri
from facestream.settings import GallerySettings

log = logging.getLogger(__name__)


def state_dir_from(args: argparse.Namespace) -> Path:
    return state_dir_of(settings_from(args, GallerySettings), settings_from(args, AccountabilitySettings))


def audit_for(state_dir: Path, settings: AuditSettings) -> AuditLog:
    """The state directory's audit log; `settings` from the command's args (settings_from)."""
    return open_audit_log(state_dir, settings)


def gallery_exists(settings: GallerySettings) -> bool:
    return is_server_uri(settings.gallery) or (Path(settings.gallery) / "milvus.db").exists()


def sweep(state_dir: Path, gallery: Gallery | None, audit: AuditWriter) -> SweepReport:
    """Expire and purge what has ended, recorded in `audit`; logged when it did anything."""
    report = Purger(state_dir, audit, gallery).sweep()
    if report.expired or report.purged or report.stale_entries:
        log.info(
            "purge: expired %s, erased entries %s, stale entries %d",
            report.expired,
            report.purged,
            report.stale_entries,
        )
    return report


def open_gallery(
    settings: GallerySettings, state_dir: Path, audit: AuditWriter, *, dim: int = 512
) -> Gallery:
    """The gallery, after the sweep (recorded in `audit`) has erased what ended: nothing expired
    is ever read again."""
    gallery = Gallery(settings, dim=dim)
    try:
        sweep(state_dir, gallery, audit)
    except BaseException:
        gallery.close()
        raise
    return gallery
