"""Enrollment photos: encrypted at rest with a key from a secret, and they decrypt back."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from facestream.accountability.photos import PhotoVault, dev_key_path
from facestream.errors import ConfigError
from tests.fixtures.accountability import enroll, files_under, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


def test_photos_on_disk_are_ciphertext_and_decrypt_back(
    tmp_path: Path, faces_dir: Path, photo_key: bytes
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    photos = [faces_dir / "enroll" / "biden_1.jpg", faces_dir / "enroll" / "biden_2.jpg"]
    assert enroll(gallery, "biden", auth, *photos).status == 0

    stored = sorted((gallery / "photos" / auth).glob("*.enc"))
    assert len(stored) == 2
    vault = PhotoVault(gallery, photo_key)
    for original in photos:
        jpeg = original.read_bytes()
        photo_id = hashlib.sha256(jpeg).hexdigest()[:32]
        sealed = vault.path(auth, photo_id).read_bytes()
        assert not sealed.startswith(b"\xff\xd8\xff")  # not a JPEG
        # No run of the photo's bytes is anywhere under the gallery, in any file.
        for offset in range(0, len(jpeg) - 64, len(jpeg) // 7):
            assert not [p for p, data in files_under(gallery).items() if jpeg[offset : offset + 64] in data]
        assert vault.get(auth, photo_id) == jpeg
        assert stat.S_IMODE(vault.path(auth, photo_id).stat().st_mode) == 0o600
    # No development key was made: the key came from FACESTREAM_PHOTO_KEY.
    assert not dev_key_path(gallery).exists()


def test_a_wrong_key_or_a_moved_file_does_not_decrypt(
    tmp_path: Path, faces_dir: Path, photo_key: bytes
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    other = grant_authorisation(gallery, case="OTHER")
    jpeg = (faces_dir / "enroll" / "obama_1.jpg").read_bytes()
    photo_id = hashlib.sha256(jpeg).hexdigest()[:32]
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    with pytest.raises(ConfigError, match="does not decrypt"):
        PhotoVault(gallery, os.urandom(32)).get(auth, photo_id)
    vault = PhotoVault(gallery, photo_key)
    moved = vault.path(other, photo_id)
    moved.parent.mkdir(parents=True)
    moved.write_bytes(vault.path(auth, photo_id).read_bytes())
    with pytest.raises(ConfigError, match="does not decrypt"):
        vault.get(other, photo_id)


def test_single_operator_mode_generates_a_private_key_beside_the_gallery(
    tmp_path: Path, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    result = enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg")
    assert result.status == 0, result.stderr
    assert "generated a development photo key" in caplog.text
    key_file = dev_key_path(gallery)
    assert key_file.parent == tmp_path  # beside the gallery, not in it
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = base64.b64decode(key_file.read_text())
    (sealed,) = (gallery / "photos" / auth).glob("*.enc")
    assert (
        PhotoVault(gallery, key).get(auth, sealed.stem) == (faces_dir / "enroll" / "obama_1.jpg").read_bytes()
    )


def test_with_roles_assigned_a_key_must_be_given(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    for member, role, by in (
        ("ops", "operator", "setup"),
        ("ana", "authoriser", "ops"),
        ("olga", "officer", "ops"),
    ):
        assert (
            run_cli("roles", "grant", "--gallery", str(gallery), "--role", role, member, "--actor", by).status
            == 0
        )
    auth = grant_authorisation(gallery, actor="ana")
    result = enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg", actor="olga")
    assert result.status == 2
    assert "no photo key" in result.error
    assert not (gallery / "milvus.db").exists() and not (gallery / "photos").exists()
    assert not dev_key_path(gallery).exists()

    key_file = tmp_path / "secret" / "photo.key"
    key_file.parent.mkdir()
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    done = run_cli(
        "gallery", "enroll", "--gallery", str(gallery), "--identity", "obama", "--authorisation", auth,
        "--photo-key-file", str(key_file), "--actor", "olga", str(faces_dir / "enroll" / "obama_1.jpg"),
    )  # fmt: skip
    assert done.status == 0, done.stderr
    (sealed,) = (gallery / "photos" / auth).glob("*.enc")
    key = base64.b64decode(key_file.read_text())
    assert PhotoVault(gallery, key).get(auth, sealed.stem)[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    ("value", "message"), [("not base64!", "not base64"), ("c2hvcnQ=", "must be 32 bytes")]
)
def test_a_malformed_key_is_refused(
    tmp_path: Path, faces_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    monkeypatch.setenv("FACESTREAM_PHOTO_KEY", value)
    result = enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg")
    assert result.status == 2
    assert message in result.error
    assert not (gallery / "photos").exists()
