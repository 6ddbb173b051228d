"""Enrollment: photos of one identity → gallery entries, through the same face path as cameras.

Each photo must show one clearly dominant, good-quality face. A photo with no usable face,
or with a second comparable face (which one is the person?), is refused with a reason,
and nothing of the request is stored: all photos are checked before any is enrolled.

Entries are enrolled under an authorisation (the command checks it is in force) and carry
its id and end of validity. The photos themselves are handed to a `PhotoKeeper` (the
encrypted photo vault) only after every photo passed, and taken back if the gallery write
fails, so a refused or failed request leaves nothing behind.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facestream.errors import EnrollmentRefused
from facestream.gallery.store import FOREVER_MS, Gallery, GalleryEntry
from facestream.messages import stable_id
from facestream.settings import GallerySettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder, FaceObservation
from facestream.vision.models import sha256_of

IDENTITY = re.compile(r"^[\w][\w .'\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class EnrolledPhoto:
    photo: str
    entry_id: str
    det_score: float
    size_px: float


@dataclass(frozen=True, slots=True)
class Enrollment:
    identity: str
    photos: tuple[EnrolledPhoto, ...]


class PhotoKeeper(Protocol):
    """Where enrollment photos are kept for re-embedding (accountability.photos.PhotoVault)."""

    def put(self, authorisation_id: str, photo_id: str, data: bytes) -> bool:
        """Keep a photo; True when it was not kept already."""
        ...

    def delete(self, authorisation_id: str, photo_ids: Iterable[str]) -> int: ...


def entry_id_for(identity: str, photo_digest: str, model_id: str, authorisation_id: str) -> str:
    """Stable: the same photo of the same identity under the same authorisation and model is one
    entry, so re-enrolling is idempotent; under another authorisation it is another entry, purged
    with that authorisation."""
    parts = [identity, photo_digest, model_id] + ([authorisation_id] if authorisation_id else [])
    return stable_id("entry", *parts)


def check_identity(identity: str) -> str:
    if not IDENTITY.match(identity):
        raise EnrollmentRefused(f"identity {identity!r} must be 1-128 letters, digits, spaces, or . ' - _")
    return identity


class FaceChecker:
    """What makes a photo enrollable, without the embedder or the gallery: its one clear face. What
    `Enroller` checks first, and all `gallery enroll-bulk --dry-run` does."""

    def __init__(self, finder: FaceFinder, settings: GallerySettings) -> None:
        self._finder = finder
        self._settings = settings

    def dominant_face(self, image: np.ndarray, name: str) -> FaceObservation:
        """The photo's one clear face, or EnrollmentRefused saying why there is none."""
        faces = self._finder.find(image)
        usable = [
            f
            for f in faces
            if f.usable
            and f.quality.det_score >= self._settings.enroll_min_score
            and f.quality.size_px >= self._settings.enroll_min_face_px
        ]
        if not usable:
            seen = f"{len(faces)} face(s) found, none" if faces else "no face found, so none"
            raise EnrollmentRefused(
                f"{name}: {seen} good enough to enroll (needs detector score "
                f">= {self._settings.enroll_min_score}, face >= {self._settings.enroll_min_face_px:.0f}px, "
                "sharp and roughly frontal)"
            )
        usable.sort(key=lambda f: f.bbox.area, reverse=True)
        dominant = usable[0]
        rivals = [
            f for f in usable[1:] if f.bbox.area >= self._settings.ambiguity_area_ratio * dominant.bbox.area
        ]
        if rivals:
            raise EnrollmentRefused(
                f"{name}: ambiguous, {1 + len(rivals)} comparable faces; crop the photo to the person"
            )
        return dominant

    def faces(self, images: list[tuple[str, bytes]]) -> list[FaceObservation]:
        """Each (name, encoded image)'s one clear face, in order; EnrollmentRefused at the first
        image without one."""
        found = []
        for name, data in images:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise EnrollmentRefused(f"{name}: not a readable image")
            found.append(self.dominant_face(image, name))
        return found


def read_photos(photos: list[Path]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each photo file; EnrollmentRefused naming one that cannot be read."""
    return [(str(path), _read(path)) for path in photos]


class Enroller:
    def __init__(
        self, finder: FaceFinder, embedder: FaceEmbedder, gallery: Gallery, settings: GallerySettings
    ) -> None:
        self._checker = FaceChecker(finder, settings)
        self._embedder = embedder
        self._gallery = gallery

    def dominant_face(self, image: np.ndarray, name: str) -> FaceObservation:
        """The photo's one clear face, or EnrollmentRefused saying why there is none."""
        return self._checker.dominant_face(image, name)

    def enroll(
        self,
        identity: str,
        photos: list[Path],
        *,
        authorisation_id: str = "",
        valid_until_ms: int = FOREVER_MS,
        keeper: PhotoKeeper | None = None,
    ) -> Enrollment:
        return self.enroll_images(
            identity,
            read_photos(photos),
            authorisation_id=authorisation_id,
            valid_until_ms=valid_until_ms,
            keeper=keeper,
        )

    def enroll_images(
        self,
        identity: str,
        images: list[tuple[str, bytes]],
        *,
        authorisation_id: str = "",
        valid_until_ms: int = FOREVER_MS,
        keeper: PhotoKeeper | None = None,
    ) -> Enrollment:
        """Enroll (name, encoded image) pairs: photos from files, or decrypted ones to re-embed."""
        check_identity(identity)
        if not images:
            raise EnrollmentRefused("at least one photo is needed")
        faces = self._checker.faces(images)
        chosen = [
            (name, sha256_of(data), face, data) for (name, data), face in zip(images, faces, strict=True)
        ]
        vectors = self._embedder.embed(np.stack([face.aligned for _, _, face, _ in chosen]))
        now = int(time.time() * 1000)
        entries = []
        for _, digest, _, _ in chosen:
            entry_id = entry_id_for(identity, digest, self._embedder.model_id, authorisation_id)
            entries.append(
                GalleryEntry(
                    entry_id=entry_id,
                    identity=identity,
                    authorisation_id=authorisation_id,
                    model_id=self._embedder.model_id,
                    photo_id=digest[:32],
                    enrolled_at_ms=now,
                    valid_until_ms=valid_until_ms,
                )
            )
        kept: list[str] = []
        try:
            if keeper is not None:
                for entry, (_, _, _, data) in zip(entries, chosen, strict=True):
                    if keeper.put(authorisation_id, entry.photo_id, data):
                        kept.append(entry.photo_id)
            self._gallery.add(entries, vectors)
        except BaseException:
            if keeper is not None and kept:
                keeper.delete(authorisation_id, kept)
            raise
        return Enrollment(
            identity,
            tuple(
                EnrolledPhoto(name, e.entry_id, f.quality.det_score, f.quality.size_px)
                for (name, _, f, _), e in zip(chosen, entries, strict=True)
            ),
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EnrollmentRefused(f"{path}: {exc.strerror or exc}") from None
