"""Enrollment photos, encrypted at rest, kept only to re-embed them when the model changes.

Each photo is one file, `photos/<authorisation>/<photo_id>.enc`: a 12-byte nonce then the
AES-256-GCM ciphertext (the `cryptography` package), with the authorisation and photo ids
as associated data, so a file moved to another authorisation or photo id does not decrypt.
One directory per authorisation: purging an authorisation removes its directory.

The key comes from a secret: FACESTREAM_PHOTO_KEY (base64 of 32 bytes), or a key file
(`--photo-key-file`, e.g. a mounted Kubernetes Secret). Only in single-operator (dev) mode,
with neither given, is a key generated, with mode 0600, *beside* the gallery directory
(never inside it, so copying the gallery does not copy the key), with a loud warning.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facestream.accountability.settings import PhotoSettings
from facestream.errors import ConfigError

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD = b"facestream-photo-v1\x1f"
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def decode_key(text: str, where: str) -> bytes:
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the photo key is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: the photo key must be {KEY_BYTES} bytes (base64), not {len(key)}")
    return key


def dev_key_path(state_dir: Path) -> Path:
    resolved = state_dir.resolve()
    return resolved.parent / f"{resolved.name}.photo-key"


def load_photo_key(settings: PhotoSettings, state_dir: Path, *, single_operator: bool) -> bytes:
    """The photo key from the secret; in single-operator mode a generated dev key; else ConfigError."""
    key = _existing_key(settings, state_dir, single_operator=single_operator)
    if key is not None:
        return key
    path = dev_key_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return decode_key(path.read_text(), str(path))
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.warning(
        "single-operator mode: generated a development photo key at %s (mode 0600); in production give "
        "FACESTREAM_PHOTO_KEY or --photo-key-file from a secret store, and keep the key out of backups "
        "of the gallery",
        path,
    )
    return decode_key(path.read_text(), str(path))


def check_photo_key(settings: PhotoSettings, state_dir: Path, *, single_operator: bool) -> None:
    """ConfigError where `load_photo_key` would raise one, without generating a development key
    where it would (a dry run writes nothing)."""
    _existing_key(settings, state_dir, single_operator=single_operator)


def _existing_key(settings: PhotoSettings, state_dir: Path, *, single_operator: bool) -> bytes | None:
    """The key given, or the development key already made; None where single-operator mode may make
    one; ConfigError where there is none to be had."""
    if settings.photo_key is not None:
        return decode_key(settings.photo_key.get_secret_value(), "FACESTREAM_PHOTO_KEY")
    if settings.photo_key_file is not None:
        try:
            text = settings.photo_key_file.read_text()
        except OSError as exc:
            raise ConfigError(f"--photo-key-file {settings.photo_key_file}: {exc.strerror or exc}") from None
        return decode_key(text, f"--photo-key-file {settings.photo_key_file}")
    path = dev_key_path(state_dir)
    if path.exists():
        log.warning("using the development photo key %s; set FACESTREAM_PHOTO_KEY in production", path)
        return decode_key(path.read_text(), str(path))
    if not single_operator:
        raise ConfigError(
            "no photo key: set FACESTREAM_PHOTO_KEY (base64 of 32 random bytes) or --photo-key-file"
        )
    return None


def _checked(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"unsafe {what} for a photo path: {value!r}")
    return value


class PhotoVault:
    """Encrypted enrollment photos under `<state_dir>/photos/`."""

    def __init__(self, state_dir: Path, key: bytes) -> None:
        self.state_dir = state_dir
        self.root = state_dir / "photos"
        self._aead = AESGCM(key)

    def path(self, authorisation_id: str, photo_id: str) -> Path:
        auth = _checked(authorisation_id or "none", "authorisation id")
        return self.root / auth / f"{_checked(photo_id, 'photo id')}.enc"

    def put(self, authorisation_id: str, photo_id: str, data: bytes) -> bool:
        """Encrypt and store a photo; True when it was not stored already."""
        path = self.path(authorisation_id, photo_id)
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, data, self._aad(authorisation_id, photo_id))
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sealed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return not existed

    def get(self, authorisation_id: str, photo_id: str) -> bytes:
        sealed = self.path(authorisation_id, photo_id).read_bytes()
        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._aad(authorisation_id, photo_id)
            )
        except InvalidTag:
            raise ConfigError(
                f"photo {photo_id} of {authorisation_id} does not decrypt: "
                "wrong photo key, or the file was altered"
            ) from None

    def delete(self, authorisation_id: str, photo_ids: Iterable[str]) -> int:
        return delete_photos(self.state_dir, authorisation_id, photo_ids)

    def photos_of(self, authorisation_id: str) -> list[str]:
        return photos_of(self.state_dir, authorisation_id)

    def purge(self, authorisation_id: str) -> int:
        return purge_photos(self.state_dir, authorisation_id)

    @staticmethod
    def _aad(authorisation_id: str, photo_id: str) -> bytes:
        return _AAD + f"{authorisation_id}\x1f{photo_id}".encode()


def photos_of(state_dir: Path, authorisation_id: str) -> list[str]:
    """The ids of an authorisation's kept photos. Needs no key, as purging."""
    folder = state_dir / "photos" / _checked(authorisation_id or "none", "authorisation id")
    return sorted(p.stem for p in folder.glob("*.enc")) if folder.is_dir() else []


def purge_photos(state_dir: Path, authorisation_id: str) -> int:
    """Delete an authorisation's photos; returns how many there were. Needs no key, so any
    process that purges (the matcher, `authorisation revoke`) can do it."""
    folder = state_dir / "photos" / _checked(authorisation_id or "none", "authorisation id")
    if not folder.is_dir():
        return 0
    count = sum(1 for _ in folder.glob("*.enc"))
    shutil.rmtree(folder, ignore_errors=True)
    return count


def kept_photos(state_dir: Path, older_than_s: float) -> dict[str, list[str]]:
    """authorisation id ("" for none) → ids of its photos last written over `older_than_s` ago.
    Needs no key, as purging."""
    root, cutoff = state_dir / "photos", time.time() - older_than_s
    kept: dict[str, list[str]] = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or not _ID.match(folder.name):
            continue
        old = []
        for photo in sorted(folder.glob("*.enc")):
            with contextlib.suppress(FileNotFoundError):  # erased meanwhile
                if photo.stat().st_mtime < cutoff:
                    old.append(photo.stem)
        if old:
            kept["" if folder.name == "none" else folder.name] = old
    return kept


def delete_photos(state_dir: Path, authorisation_id: str, photo_ids: Iterable[str]) -> int:
    folder = state_dir / "photos" / _checked(authorisation_id or "none", "authorisation id")
    gone = 0
    for photo_id in photo_ids:
        try:
            (folder / f"{_checked(photo_id, 'photo id')}.enc").unlink()
            gone += 1
        except FileNotFoundError:
            pass
    return gone
