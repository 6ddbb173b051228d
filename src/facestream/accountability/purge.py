"""Purge: an ended authorisation's vectors and photos are erased within a bounded time.

- Revoke: matching stops at once (the policy re-reads the store every batch) and
  `authorisation revoke` erases the data right away; if another process owns the Milvus
  Lite gallery (a running matcher), the photos go at once and the vectors at that owner's
  next sweep.
- Expiry: every command that opens the gallery sweeps first, and the matcher sweeps every
  `--purge-interval-s`; a sweep marks authorisations past their validity `expired`
  (audited `authorisation.expire`) and erases the data of every ended authorisation not yet
  purged (audited `gallery.purge`). Expired entries cannot match meanwhile: the search
  filter checks the validity stamped on each entry.

So the bound is: revoke → immediate (or one purge interval when the gallery is owned
elsewhere); expiry → one purge interval while a matcher runs, else the next command.

A photo that no gallery entry uses any more is erased by the sweep once it is an hour old
(audited `gallery.purge`, reason `photo-without-entry`): a removal or expiry erases the entries,
then their photos, and a process killed in between left the photos until the whole authorisation
ended; an enrollment killed after keeping its photos and before writing its entries left them
too. The hour spares an enrollment in progress, which keeps its photos just before it writes the
entries that use them.

Every erasure of entries (an authorisation's purge, an entry's expiry, `gallery remove`,
re-embedding) has its audit records kept before it (accountability/erasures.py); a sweep first
appends those that a process killed after erasing, or refused by the audit log, left unrecorded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facestream.accountability.audit import Actor, AuditWriter
from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.accountability.erasures import ErasureRecord, RecordedErasures
from facestream.accountability.photos import delete_photos, kept_photos
from facestream.errors import FacestreamError
from facestream.gallery.store import Gallery, GalleryEntry

log = logging.getLogger(__name__)

SYSTEM = Actor("facestream", "system")
"""Who acts when nobody does: expiry and scheduled purges."""

UNUSED_PHOTO_AGE_S = 3600.0
"""A photo no entry uses is erased once this old (an enrollment in progress keeps photos first)."""
UNUSED_PHOTO_CHECK_EVERY_S = 600.0
"""The check asks the gallery once per authorisation with photos, so it runs at most this often,
not on every sweep (every command that opens the gallery sweeps)."""


@dataclass
class SweepReport:
    expired: list[str] = field(default_factory=list)
    purged: dict[str, int] = field(default_factory=dict)
    """authorisation id → entries erased."""
    stale_entries: int = 0
    recorded_after_restart: int = 0
    """Audit records of erasures whose process ended before it could append them."""
    unused_photos: dict[str, int] = field(default_factory=dict)
    """authorisation id → photos erased that no entry used."""


class Purger:
    def __init__(self, state_dir: Path, audit: AuditWriter, gallery: Gallery | None = None) -> None:
        self.state_dir = state_dir
        self.store = AuthorisationStore(state_dir)
        self.audit = audit
        self.gallery = gallery
        self.erasures = RecordedErasures(state_dir, audit)

    def purge(self, auth: Authorisation, actor: Actor) -> bool:
        """Erase an ended authorisation's photos, and its vectors when this process has the gallery.

        Returns True when both are gone (the authorisation is then stamped `purged_at_ms`).
        Erasing comes first, since data past its authorisation must go even while the audit
        store is down; if the record then fails, or the process dies, the stamp is not set, and
        the next sweep appends the record kept before the erasure (accountability/erasures.py)
        and purges again (what was left by then, possibly nothing, in a record of its own).
        """
        if auth.status == "active":
            raise ValueError(f"{auth.id} is active; only ended authorisations are purged")
        complete = self.gallery is not None
        objects = {"complete": complete, "reason": auth.status}
        self.erasures.purge_authorisation(self.gallery, actor, auth.id, objects)
        if not complete:
            return False
        self.store.update(auth.id, purged_at_ms=now_ms())
        return True

    def sweep(self, at_ms: int | None = None, actor: Actor = SYSTEM) -> SweepReport:
        """Record the erasures a process left unrecorded, expire, then purge every ended
        authorisation whose data is still there."""
        at = now_ms() if at_ms is None else at_ms
        report = SweepReport()
        report.recorded_after_restart = self.erasures.finish_pending(self.gallery)

        def record_expiry(auth: Authorisation) -> None:
            self.audit.append(
                actor=SYSTEM,
                action="authorisation.expire",
                authorisation_id=auth.id,
                objects={"valid_until_ms": auth.valid_until_ms},
            )

        report.expired = [auth.id for auth in self.store.mark_expired(at, record_expiry)]
        for auth in list(self.store.all().values()):
            if auth.status != "active" and auth.purged_at_ms is None and self.gallery is not None:
                before = len(self.gallery.entries_of_authorisation(auth.id))
                if self.purge(auth, actor):
                    report.purged[auth.id] = before
        if self.gallery is not None:
            expired = self.gallery.expired(at)
            if expired:
                record = ErasureRecord(
                    "gallery.purge",
                    tuple(e.entry_id for e in expired),
                    objects={"entries": len(expired), "reason": "entry-expired"},
                )
                stale = self.erasures.erase(self.gallery, actor, [record])
                erase_photos_of(self.state_dir, stale, self.gallery)
                report.stale_entries = len(stale)
            report.unused_photos = self._erase_unused_photos(actor)
        return report

    def _erase_unused_photos(self, actor: Actor, older_than_s: float = UNUSED_PHOTO_AGE_S) -> dict[str, int]:
        """Erase the photos, older than `older_than_s`, that no entry of their authorisation uses; at
        most once per UNUSED_PHOTO_CHECK_EVERY_S (the time of the last check is a file's mtime)."""
        assert self.gallery is not None
        stamp = self.state_dir / "photos" / ".unused-checked"
        with contextlib.suppress(FileNotFoundError):
            if time.time() - stamp.stat().st_mtime < UNUSED_PHOTO_CHECK_EVERY_S:
                return {}
        erased = {}
        for auth_id, photo_ids in kept_photos(self.state_dir, older_than_s).items():
            used = {e.photo_id for e in self.gallery.entries_of_authorisation(auth_id)}
            gone = delete_photos(self.state_dir, auth_id, [p for p in photo_ids if p not in used])
            if gone:
                erased[auth_id] = gone
                self.audit.append(
                    actor=actor,
                    action="gallery.purge",
                    authorisation_id=auth_id or None,
                    objects={"entries": 0, "photos": gone, "reason": "photo-without-entry"},
                )
        if stamp.parent.is_dir():
            stamp.touch()
        return erased


def erase_photos_of(state_dir: Path, removed: Sequence[GalleryEntry], gallery: Gallery) -> int:
    """Delete the photos of removed entries that no remaining entry of the same authorisation uses."""
    gone = 0
    for auth_id in sorted({e.authorisation_id for e in removed}):
        still_used = {e.photo_id for e in gallery.entries_of_authorisation(auth_id)} if auth_id else set()
        unused = {e.photo_id for e in removed if e.authorisation_id == auth_id} - still_used
        gone += delete_photos(state_dir, auth_id, sorted(unused))
    return gone


class PurgeScheduler:
    """The matcher's periodic sweep, on a daemon thread; the Gallery serialises client calls."""

    def __init__(self, purger: Purger, interval_s: float) -> None:
        self._purger = purger
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="purge", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                report = self._purger.sweep()
            except FacestreamError as exc:
                log.error("purge sweep failed, retried in %.0fs: %s", self._interval_s, exc)
                continue
            if report.expired or report.purged or report.stale_entries:
                log.info(
                    "purge: expired %s, erased %s, stale entries %d",
                    report.expired,
                    report.purged,
                    report.stale_entries,
                )
