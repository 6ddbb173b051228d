"""The enrolled photo behind a candidate, for the reviewer to compare with the camera's crop.

A gallery entry's id is derived from its identity, the sha256 of its photo, the model and
the authorisation (gallery.enroll.entry_id_for). So the photo of the matched entry is the
one, among the encrypted photos kept under the candidate's authorisation, whose digest
gives the candidate's entry id: no gallery access is needed (with Milvus Lite, only the
matcher may open the gallery). Decrypted photos are never written anywhere; only their
digests are cached, per file version.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from facestream.accountability.photos import PhotoVault
from facestream.errors import ConfigError
from facestream.gallery.enroll import entry_id_for

log = logging.getLogger(__name__)

KeyLoader = Callable[[], bytes]


class EnrolledPhotos:
    def __init__(self, state_dir: Path, load_key: KeyLoader) -> None:
        self._state_dir = state_dir
        self._load_key = load_key
        self._vault: PhotoVault | None = None
        self._digests: dict[tuple[str, str], tuple[int, int, str]] = {}
        """(authorisation, photo id) -> (mtime_ns, size, sha256 of the plaintext)"""
        self._mutex = threading.Lock()

    def _open(self) -> PhotoVault:
        if self._vault is None:
            self._vault = PhotoVault(self._state_dir, self._load_key())
        return self._vault

    def photo_of(self, *, entry_id: str, identity: str, model_id: str, authorisation_id: str) -> bytes | None:
        """The decrypted photo of the entry, or None when none of the kept photos is it (purged,
        or enrolled elsewhere). ConfigError when the photo key is missing or wrong."""
        with self._mutex:
            vault = self._open()
            try:
                photo_ids = vault.photos_of(authorisation_id)
            except ValueError:  # not an id a photo path can have: nothing is kept under it
                return None
            for photo_id in photo_ids:
                path = vault.path(authorisation_id, photo_id)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                cached = self._digests.get((authorisation_id, photo_id))
                data: bytes | None = None
                if cached is None or cached[:2] != (st.st_mtime_ns, st.st_size):
                    try:
                        data = vault.get(authorisation_id, photo_id)
                    except FileNotFoundError:
                        continue
                    cached = (st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest())
                    self._digests[(authorisation_id, photo_id)] = cached
                if entry_id_for(identity, cached[2], model_id, authorisation_id) == entry_id:
                    try:
                        return data if data is not None else vault.get(authorisation_id, photo_id)
                    except FileNotFoundError:
                        return None
            return None

    def try_photo_of(self, **entry: str) -> tuple[bytes | None, str | None]:
        """(photo, None), or (None, why there is none) for the page to say."""
        try:
            photo = self.photo_of(**entry)
        except ConfigError as exc:
            log.warning("enrolled photo unavailable: %s", exc)
            return None, "the enrolled photo cannot be decrypted here (photo key missing or wrong)"
        if photo is None:
            return None, "no enrolled photo is kept for this entry (purged with its authorisation?)"
        return photo, None
