"""Enrolling under an authorisation, audited: what `gallery enroll` and `gallery enroll-bulk` share.

The authorisation is checked again before each identity (the sweep of opening the gallery, or the
hours a bulk enrollment can take, may have ended it), and an enrollment the audit log does not
show must not exist: if its record cannot be written, its entries and photos are removed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facestream.accountability.audit import Actor, AuditWriter
from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.accountability.photos import PhotoVault
from facestream.accountability.purge import erase_photos_of
from facestream.gallery.enroll import Enroller, Enrollment
from facestream.gallery.store import Gallery


@dataclass(frozen=True, slots=True)
class AuditedEnroller:
    """Enrolls identities for one officer under one authorisation, into an open gallery."""

    state_dir: Path
    actor: Actor
    authorisation_id: str
    enroller: Enroller
    gallery: Gallery
    audit: AuditWriter
    vault: PhotoVault

    def enroll(self, identity: str, photos: list[Path]) -> tuple[Enrollment, Authorisation]:
        """One identity's photos, audited as `gallery.enroll`; EnrollmentRefused (nothing kept)
        when a photo does not show one clear face."""
        auth = AuthorisationStore(self.state_dir).usable(self.authorisation_id)
        result = self.enroller.enroll(
            identity,
            photos,
            authorisation_id=auth.id,
            valid_until_ms=auth.valid_until_ms,
            keeper=self.vault,
        )
        entry_ids = [p.entry_id for p in result.photos]
        try:
            self.audit.append(
                actor=self.actor,
                action="gallery.enroll",
                authorisation_id=auth.id,
                objects={"identity": result.identity, "entries": entry_ids, "photos": len(entry_ids)},
            )
        except BaseException:
            erase_photos_of(self.state_dir, self.gallery.remove_entries(entry_ids), self.gallery)
            raise
        return result, auth
