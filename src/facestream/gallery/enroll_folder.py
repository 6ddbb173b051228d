"""A folder to enroll in bulk: one subfolder per person, named after them, holding their photos.

Why a folder: it is how the users of CompreFace and Frigate keep watchlist photos, and what they
ask to load in one go (CompreFace #1299) instead of one command per person, each loading the
models and opening the gallery again. Everything about the folder is read before any model is:
a subfolder that cannot be enrolled as it is (a name that is not an identity, no photos) is
listed with the reason, and the rest go ahead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from facestream.errors import ConfigError, EnrollmentRefused
from facestream.gallery.enroll import check_identity

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Files taken as photos (any case); others in an identity's folder are left alone."""


@dataclass(frozen=True, slots=True)
class BulkIdentity:
    """One identity to enroll in bulk (a subfolder, or a manifest's rows), its photos, and why it
    cannot be enrolled, if so."""

    identity: str
    photos: tuple[Path, ...]
    why_not: str | None = None

    def refused(self, why: str) -> BulkIdentity:
        return replace(self, why_not=why)

    def checked(self) -> BulkIdentity:
        """Refused here if its name is not an identity or it has no photos: before any model loads."""
        try:
            check_identity(self.identity)
        except EnrollmentRefused as exc:
            return self.refused(str(exc))
        if not self.photos:
            return self.refused(f"no photos ({', '.join(PHOTO_SUFFIXES)})")
        return self


def identities_in(folder: Path) -> list[BulkIdentity]:
    """The identities of `folder`, by name; ConfigError (one line) when it is not a folder of
    folders."""
    if not folder.is_dir():
        raise ConfigError(
            f"{folder} is not a folder (expected one subfolder per identity, holding its photos)"
        )
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise ConfigError(
            f"{folder} has no subfolders (expected one per identity, named after it, holding its photos)"
        )
    loose = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES]
    if loose:
        log.warning(
            "%s: %d photo(s) outside any identity's folder, not enrolled: %s",
            folder,
            len(loose),
            sorted(loose)[:5],
        )
    return [
        BulkIdentity(
            sub.name,
            tuple(sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)),
        ).checked()
        for sub in subfolders
    ]
