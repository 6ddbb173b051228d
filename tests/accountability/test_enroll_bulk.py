"""`gallery enroll-bulk`: a folder of identities enrolled in one run; one refused does not stop the rest."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from facestream.accountability.authorisations import AuthorisationStore
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings
from tests.fixtures.accountability import audit_records, files_under, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


def bulk(gallery: Path, auth: str, folder: Path) -> tuple[int, list[dict[str, object]]]:
    result = run_cli(
        "gallery", "enroll-bulk", "--gallery", str(gallery), "--authorisation", auth, str(folder)
    )
    return result.status, result.json()


def people_folder(root: Path, faces_dir: Path) -> Path:
    """Three people who can be enrolled and three folders that cannot, each for its own reason."""
    enroll = faces_dir / "enroll"
    layout = {
        "obama": ["obama_1.jpg", "obama_2.jpg"],
        "biden": ["biden_1.jpg"],
        "rose leslie": ["rose_leslie_1.jpg"],
        "bad$name": ["alex_lacamoire_1.jpg"],
    }
    for person, photos in layout.items():
        (root / person).mkdir(parents=True)
        for photo in photos:
            shutil.copy(enroll / photo, root / person / photo)
    (root / "broken").mkdir()
    (root / "broken" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("photos to follow")
    return root


def test_a_folder_is_enrolled_identity_by_identity_and_the_refused_are_reported(
    tmp_path: Path, faces_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    folder = people_folder(tmp_path / "people", faces_dir)

    with caplog.at_level(logging.INFO, logger="facestream.commands.gallery"):
        status, lines = bulk(gallery, auth, folder)

    assert status == 1  # some were refused
    *per_identity, summary = lines
    assert summary == {"summary": {"identities": 6, "enrolled": 3, "refused": 3}}
    enrolled = {str(line["identity"]): line for line in per_identity if "entries" in line}
    refused = {str(line["identity"]): str(line["refused"]) for line in per_identity if "refused" in line}
    assert sorted(enrolled) == ["biden", "obama", "rose leslie"]
    assert [len(enrolled[p]["entries"]) for p in ("obama", "biden", "rose leslie")] == [2, 1, 1]  # type: ignore[arg-type]
    assert all(line["authorisation_id"] == auth for line in enrolled.values())
    assert sorted(refused) == ["bad$name", "broken", "empty"]
    assert "must be 1-128 letters" in refused["bad$name"]
    assert "not a readable image" in refused["broken"]
    assert refused["empty"].startswith("no photos")
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("enroll-bulk ")]
    assert [line.split(" ")[1] for line in progress] == [f"{n}/6" for n in range(1, 7)]

    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        entries = g.entries()
    finally:
        g.close()
    assert sorted(e.identity for e in entries) == ["biden", "obama", "obama", "rose leslie"]
    records = [r for r in audit_records(gallery) if r.action == "gallery.enroll"]
    assert sorted(str(r.objects["identity"]) for r in records) == ["biden", "obama", "rose leslie"]
    assert len(list((gallery / "photos" / auth).glob("*.enc"))) == 4  # nothing of the refused kept

    # The refused fixed (here: set aside), the same folder again: nothing new, nothing refused.
    for bad in ("bad$name", "broken", "empty"):
        shutil.rmtree(folder / bad)
    status, lines = bulk(gallery, auth, folder)
    assert status == 0 and lines[-1] == {"summary": {"identities": 3, "enrolled": 3, "refused": 0}}
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        assert g.count() == 4  # the same entries: enrolling is idempotent
    finally:
        g.close()


class RevokeAfterFirstEnrolled(logging.Handler):
    """Revokes the authorisation (as another officer would, in the authorisation store) the moment
    the run logs its first enrolled identity."""

    def __init__(self, gallery: Path, auth: str) -> None:
        super().__init__(logging.INFO)
        self.store, self.auth, self.revoked_after = AuthorisationStore(gallery), auth, ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not self.revoked_after and message.startswith("enroll-bulk ") and "photo(s)" in message:
            self.revoked_after = message
            self.store.revoke(self.auth, by="officer-2")


def test_an_authorisation_revoked_mid_run_stops_it_with_a_summary_of_what_was_done(
    tmp_path: Path, faces_dir: Path
) -> None:
    """The next identity is not enrolled under a revoked authorisation; the run stops there, and the
    officer still gets the summary (what was enrolled, refused, not attempted, and why it stopped)
    before the command's one error line."""
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    folder = people_folder(tmp_path / "people", faces_dir)
    revoker = RevokeAfterFirstEnrolled(gallery, auth)
    logger = logging.getLogger("facestream.commands.gallery")
    level = logger.level
    logger.addHandler(revoker)
    logger.setLevel(logging.INFO)
    try:
        result = run_cli(
            "gallery", "enroll-bulk", "--gallery", str(gallery), "--authorisation", auth, str(folder)
        )  # fmt: skip
    finally:
        logger.removeHandler(revoker)
        logger.setLevel(level)

    # in name order: bad$name refused, biden enrolled (then the revocation), broken not attempted
    assert revoker.revoked_after.startswith("enroll-bulk 2/6 biden")
    assert result.status == 1
    *per_identity, summary = result.json()
    assert [line["identity"] for line in per_identity] == ["bad$name", "biden"]
    stopped = summary["summary"]
    assert {k: v for k, v in stopped.items() if k != "stopped"} == {
        "identities": 6, "enrolled": 1, "refused": 1, "not_attempted": 4,
    }  # fmt: skip
    assert "revoked" in stopped["stopped"] and stopped["stopped"] in result.error
    records = [r for r in audit_records(gallery) if r.action == "gallery.enroll"]
    assert [r.objects["identity"] for r in records] == ["biden"]


def test_a_dry_run_refuses_what_the_real_run_would_and_writes_nothing(
    tmp_path: Path, faces_dir: Path
) -> None:
    """An officer checks a folder of hundreds before enrolling: the same verdicts as the real run
    (above), from the detector alone, and not a byte written: no entry, photo, audit record."""
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    folder = people_folder(tmp_path / "people", faces_dir)
    before = files_under(tmp_path)

    result = run_cli(
        "gallery", "enroll-bulk", "--dry-run", "--gallery", str(gallery), "--authorisation", auth, str(folder)
    )

    assert result.status == 1, result.stderr  # some would be refused
    *per_identity, summary = result.json()
    assert summary == {"summary": {"identities": 6, "would_enroll": 3, "refused": 3, "dry_run": True}}
    would = {str(line["identity"]): line["would_enroll"] for line in per_identity if "would_enroll" in line}
    assert {name: len(photos) for name, photos in would.items()} == {"biden": 1, "obama": 2, "rose leslie": 1}  # type: ignore[arg-type]
    refused = {str(line["identity"]): str(line["refused"]) for line in per_identity if "refused" in line}
    assert sorted(refused) == ["bad$name", "broken", "empty"]
    assert "not a readable image" in refused["broken"]
    assert files_under(tmp_path) == before

    unknown = run_cli(
        "gallery", "enroll-bulk", "--dry-run", "--gallery", str(gallery), "--authorisation",
        "auth_0000000000000000", str(folder),
    )  # fmt: skip
    assert (unknown.status, unknown.stdout) == (1, "")
    assert "no authorisation 'auth_0000000000000000'" in unknown.error
    assert files_under(tmp_path) == before


def manifest_for(root: Path, faces_dir: Path) -> Path:
    """Photos named by reference number in one folder, and a CSV saying whose each is: two people
    who can be enrolled (one with rows apart, one listed twice, by a relative and an absolute path)
    and three who cannot, each for its own reason; columns beyond identity and photo."""
    enroll, photos = faces_dir / "enroll", root / "photos"
    photos.mkdir(parents=True)
    for number, name in [
        ("1001", "obama_1"),
        ("1002", "rose_leslie_1"),
        ("1003", "obama_2"),
        ("1004", "biden_1"),
    ]:
        shutil.copy(enroll / f"{name}.jpg", photos / f"{number}.jpg")
    (photos / "1005.txt").write_text("not a photo")
    manifest = root / "watchlist.csv"
    manifest.write_text(
        "\ufeffcase_ref,Identity,photo,notes\n"  # a spreadsheet's byte-order mark, a capitalised header
        "A-1,obama,photos/1001.jpg,front\n"
        "A-2,rose leslie,photos/1002.jpg,\n"
        "\n"
        "A-3,obama,photos/1003.jpg,\n"
        f"A-4,rose leslie,{photos / '1002.jpg'},the same photo again\n"
        "A-5,bad$name,photos/1004.jpg,\n"
        "A-6,biden,photos/1006.jpg,not sent yet\n"
        "A-7,alex_lacamoire,photos/1005.txt,\n",
        encoding="utf-8",
    )
    return manifest


def test_a_manifest_is_enrolled_as_a_folder_is(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    manifest = manifest_for(tmp_path / "export", faces_dir)

    dry = run_cli(
        "gallery", "enroll-bulk", "--dry-run", "--gallery", str(gallery), "--authorisation", auth,
        "--manifest", str(manifest),
    )  # fmt: skip
    result = run_cli(
        "gallery", "enroll-bulk", "--gallery", str(gallery), "--authorisation", auth,
        "--manifest", str(manifest),
    )  # fmt: skip

    assert (dry.status, result.status) == (1, 1), result.stderr
    assert dry.json()[-1] == {"summary": {"identities": 5, "would_enroll": 2, "refused": 3, "dry_run": True}}
    *per_identity, summary = result.json()
    assert summary == {"summary": {"identities": 5, "enrolled": 2, "refused": 3}}
    assert [line["identity"] for line in per_identity] == [
        "obama", "rose leslie", "bad$name", "biden", "alex_lacamoire",
    ]  # fmt: skip
    photos = {
        str(line["identity"]): [e["photo"] for e in line["entries"]]
        for line in per_identity
        if "entries" in line
    }
    export = tmp_path / "export" / "photos"
    assert photos == {
        "obama": [str(export / "1001.jpg"), str(export / "1003.jpg")],
        "rose leslie": [str(export / "1002.jpg")],
    }
    refused = {str(line["identity"]): str(line["refused"]) for line in per_identity if "refused" in line}
    assert "must be 1-128 letters" in refused["bad$name"]
    assert refused["biden"] == f"photo {export / '1006.jpg'}: not found"
    assert refused["alex_lacamoire"].startswith(f"photo {export / '1005.txt'}: not a photo")
    records = [r for r in audit_records(gallery) if r.action == "gallery.enroll"]
    assert sorted(str(r.objects["identity"]) for r in records) == ["obama", "rose leslie"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "identity;photo\nobama;a.jpg\n",
            "watchlist.csv:1: the header must name the columns identity, photo",
        ),
        ("name,file\nobama,a.jpg\n", "(missing: identity, photo)"),
        ("identity,photo\n\n", "watchlist.csv: no rows after the header"),
        ("identity,photo\nobama,a.jpg\n,b.jpg\n", "watchlist.csv:3: no identity"),
        ("identity,photo,notes\nobama\n", "watchlist.csv:2: no photo"),
        (None, "watchlist.csv: no such file"),
        (b"identity,photo\n\xff\xfe,a.jpg\n", "not UTF-8 text"),
        ("under-a-file", "watchlist.csv: cannot be read (Not a directory)"),
    ],
    ids=[
        "semicolons",
        "other-columns",
        "no-rows",
        "no-identity",
        "short-row",
        "missing",
        "not-utf8",
        "under-a-file",
    ],
)
def test_a_file_that_is_not_a_manifest_is_one_line_and_touches_nothing(
    tmp_path: Path, text: str | bytes | None, says: str
) -> None:
    manifest = tmp_path / "watchlist.csv"
    if isinstance(text, bytes):
        manifest.write_bytes(text)
    elif text == "under-a-file":  # a path no one can read, even root: a file where its folder should be
        (tmp_path / "notes.txt").write_text("")
        manifest = tmp_path / "notes.txt" / "watchlist.csv"
    elif text is not None:
        manifest.write_text(text)
    gallery = tmp_path / "gallery"
    result = run_cli(
        "gallery", "enroll-bulk", "--gallery", str(gallery), "--authorisation", "auth_x",
        "--manifest", str(manifest),
    )  # fmt: skip
    assert result.status == 2
    assert says in result.error
    assert result.stdout == ""
    assert not gallery.exists()


@pytest.mark.parametrize("what", ["missing", "a-file", "no-subfolders"])
def test_a_folder_that_is_not_a_folder_of_identities_is_one_line_and_touches_nothing(
    tmp_path: Path, faces_dir: Path, what: str
) -> None:
    folder = tmp_path / "people"
    if what == "a-file":
        folder.write_bytes((faces_dir / "enroll" / "obama_1.jpg").read_bytes())
    elif what == "no-subfolders":
        folder.mkdir()
        shutil.copy(faces_dir / "enroll" / "obama_1.jpg", folder / "obama_1.jpg")
    gallery = tmp_path / "gallery"
    result = run_cli(
        "gallery", "enroll-bulk", "--gallery", str(gallery), "--authorisation", "auth_x", str(folder)
    )
    assert result.status == 2
    assert "subfolder per identity" in result.error or "has no subfolders" in result.error
    assert result.stdout == ""
    assert not gallery.exists()
