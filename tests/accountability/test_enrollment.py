"""Enrollment only under an authorisation in force; refusals store nothing; entries carry its validity."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestream.accountability.authorisations import AuthorisationStore
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings
from tests.fixtures.accountability import audit_records, enroll, files_under, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")

AUDIT_FILES = {"audit.log", "audit.head", "audit.pub"}


def test_enrollment_needs_the_authorisation_flag(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    result = run_cli(
        "gallery", "enroll", "--gallery", str(gallery), "--identity", "obama",
        str(faces_dir / "enroll" / "obama_1.jpg"),
    )  # fmt: skip
    assert result.status == 2
    assert "enrollment needs --authorisation ID" in result.error
    assert result.stdout == ""
    assert not gallery.exists()


@pytest.mark.parametrize("command", ["enroll", "remove"])
def test_a_malformed_identity_is_a_usage_error_that_touches_nothing(
    tmp_path: Path, faces_dir: Path, command: str
) -> None:
    gallery = tmp_path / "gallery"
    photo = str(faces_dir / "enroll" / "obama_1.jpg")
    photos = ["--authorisation", "auth_x", photo] if command == "enroll" else []
    result = run_cli("gallery", command, "--gallery", str(gallery), "--identity", "obama/../x", *photos)
    assert result.status == 2
    said = f"facestream gallery {command}: error: argument --identity: identity 'obama/../x' must be"
    assert said in result.stderr
    assert result.stdout == ""
    assert not gallery.exists()


@pytest.mark.parametrize("state", ["unknown", "revoked", "expired", "not-yet-valid"])
def test_enrollment_under_an_authorisation_not_in_force_is_refused(
    tmp_path: Path, faces_dir: Path, state: str
) -> None:
    gallery = tmp_path / "gallery"
    if state == "unknown":
        auth = "auth_0123456789abcdef"
        grant_authorisation(gallery)  # another one exists
    elif state == "revoked":
        auth = grant_authorisation(gallery)
        assert run_cli("authorisation", "revoke", "--gallery", str(gallery), auth).status == 0
    elif state == "expired":
        auth = grant_authorisation(gallery)
        store = AuthorisationStore(gallery)
        store.update(auth, valid_from_ms=1_000, valid_until_ms=2_000)  # ended long ago
    else:
        auth = grant_authorisation(gallery, valid_from="2098-01-01")
    before = files_under(gallery)
    result = enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg")
    assert result.status == 1
    assert result.stdout == ""
    expected = {
        "unknown": "no authorisation",
        "revoked": "is revoked",
        "expired": "expired at",
        "not-yet-valid": "not valid before",
    }[state]
    assert expected in result.error
    assert "\n" not in result.error
    # Nothing stored: no vectors, no photos, no enrollment record.
    after = files_under(gallery)
    assert not (gallery / "milvus.db").exists()
    assert not any("photos" in p.parts for p in after)
    assert "gallery.enroll" not in [r.action for r in audit_records(gallery)]
    assert {p: d for p, d in after.items() if p.name not in AUDIT_FILES} == {
        p: d for p, d in before.items() if p.name not in AUDIT_FILES
    }


def test_entries_carry_the_authorisation_and_its_end(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery, valid_until="2090-05-05T00:00:00Z")
    other = grant_authorisation(gallery, case="OTHER")
    photo = faces_dir / "enroll" / "obama_1.jpg"
    first = enroll(gallery, "obama", auth, photo, faces_dir / "enroll" / "obama_2.jpg")
    assert first.status == 0, first.stderr
    (printed,) = first.json()
    assert printed["authorisation_id"] == auth
    until = AuthorisationStore(gallery).get(auth).valid_until_ms
    # The same photo under another authorisation is another entry (purged with that one).
    second = enroll(gallery, "obama", other, photo)
    assert second.status == 0, second.stderr
    assert second.json()[0]["entries"][0]["entry_id"] not in {e["entry_id"] for e in printed["entries"]}
    # Re-enrolling under the same authorisation is idempotent.
    again = enroll(gallery, "obama", auth, photo)
    assert again.json()[0]["entries"][0]["entry_id"] == printed["entries"][0]["entry_id"]

    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        entries = g.entries()
    finally:
        g.close()
    assert len(entries) == 3
    mine = [e for e in entries if e.authorisation_id == auth]
    assert len(mine) == 2 and all(e.valid_until_ms == until for e in mine)
    enrolls = [r for r in audit_records(gallery) if r.action == "gallery.enroll"]
    assert [(r.authorisation_id, r.objects["identity"]) for r in enrolls] == [
        (auth, "obama"),
        (other, "obama"),
        (auth, "obama"),
    ]
    assert enrolls[0].objects["entries"] == [e["entry_id"] for e in printed["entries"]]
    assert enrolls[0].role == "officer:single-operator"


def test_a_refused_photo_stores_nothing_of_the_request(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    result = enroll(
        gallery,
        "rose",
        auth,
        faces_dir / "enroll" / "rose_leslie_1.jpg",
        faces_dir / "scenes" / "two_people.jpg",
    )
    assert result.status == 1
    assert "ambiguous" in result.error
    assert not (gallery / "photos").exists() or not any((gallery / "photos").rglob("*.enc"))
    assert "gallery.enroll" not in [r.action for r in audit_records(gallery)]
