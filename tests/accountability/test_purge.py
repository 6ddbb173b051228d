"""Purge: revoked or expired authorisations' vectors and photos are erased from disk, within a bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from facestream.accountability.audit import open_audit_log
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.accountability.matching import open_matching
from facestream.accountability.photos import PhotoVault, load_photo_key
from facestream.accountability.purge import Purger
from facestream.accountability.settings import AccountabilitySettings, PhotoSettings, PolicySettings
from facestream.errors import AuditError
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import FOREVER_MS, QUERY_LIMIT, Gallery
from facestream.settings import GallerySettings, MatcherSettings, Settings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import (
    RefusingAudit,
    audit_records,
    containing,
    enroll,
    grant_authorisation,
    run_cli,
)
from tests.fixtures.milvus import synthetic_entries
from tests.fixtures.reliability import MilvusServer

pytestmark = pytest.mark.usefixtures("accountability_env")


@pytest.fixture(scope="module")
def vector_bytes(finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path) -> dict[str, bytes]:
    """The first floats of each enroll/ photo's vector as Milvus stores them: the needle to look for."""
    enroller = Enroller(finder, embedder, None, GallerySettings())  # type: ignore[arg-type]
    out = {}
    for photo in sorted((faces_dir / "enroll").glob("*.jpg")):
        face = enroller.dominant_face(cv2.imread(str(photo)), photo.name)
        vector = embedder.embed(face.aligned[None])[0].astype(np.float32)
        out[photo.stem] = vector[:8].tobytes()
    return out


def entries(gallery: Path, auth: str) -> int:
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        return len(g.entries_of_authorisation(auth))
    finally:
        g.close()


def test_revoke_erases_vectors_and_photos_at_once(
    tmp_path: Path, faces_dir: Path, vector_bytes: dict[str, bytes]
) -> None:
    gallery = tmp_path / "gallery"
    ended, kept = grant_authorisation(gallery, case="ENDED"), grant_authorisation(gallery, case="KEPT")
    assert enroll(gallery, "obama", ended, *sorted((faces_dir / "enroll").glob("obama_*.jpg"))).status == 0
    assert enroll(gallery, "biden", kept, faces_dir / "enroll" / "biden_1.jpg").status == 0
    obama = [vector_bytes["obama_1"], vector_bytes["obama_2"]]
    assert all(containing(v, gallery / "milvus.db") for v in obama)  # the needle is findable

    result = run_cli("authorisation", "revoke", "--gallery", str(gallery), ended)
    assert result.status == 0, result.stderr
    assert result.json()[0]["purged"] is True
    for needle in obama:
        assert containing(needle, gallery) == []
    assert not (gallery / "photos" / ended).exists()
    assert AuthorisationStore(gallery).get(ended).purged_at_ms is not None
    # The other authorisation's entry and photo are untouched.
    assert containing(vector_bytes["biden_1"], gallery / "milvus.db")
    assert entries(gallery, kept) == 1 and entries(gallery, ended) == 0
    assert len(list((gallery / "photos" / kept).glob("*.enc"))) == 1
    purge = [r for r in audit_records(gallery) if r.action == "gallery.purge"]
    assert [(p.authorisation_id, p.objects["entries"], p.objects["photos"]) for p in purge] == [(ended, 2, 2)]


def test_expiry_is_purged_when_the_gallery_is_next_opened(
    tmp_path: Path, faces_dir: Path, vector_bytes: dict[str, bytes]
) -> None:
    gallery = tmp_path / "gallery"
    until = now_ms() + 2500
    iso_until = datetime.fromtimestamp(until / 1000, tz=UTC).isoformat(timespec="milliseconds")
    short = grant_authorisation(gallery, valid_until=iso_until, valid_from=None)
    assert enroll(gallery, "alex", short, faces_dir / "enroll" / "alex_lacamoire_1.jpg").status == 0
    assert containing(vector_bytes["alex_lacamoire_1"], gallery)
    while now_ms() <= until:  # let it run out
        time.sleep(0.1)
    listed = run_cli("gallery", "list", "--gallery", str(gallery))
    assert listed.status == 0, listed.stderr
    assert listed.json() == []
    assert containing(vector_bytes["alex_lacamoire_1"], gallery) == []
    assert not (gallery / "photos" / short).exists()
    assert AuthorisationStore(gallery).get(short).status == "expired"
    tail = [(r.action, r.authorisation_id, r.actor) for r in audit_records(gallery)][-3:]
    assert tail[:2] == [("authorisation.expire", short, "facestream"), ("gallery.purge", short, "facestream")]
    assert tail[2][0] == "gallery.list"


def _revoke_in_another_process(gallery: Path, auth: str) -> dict[str, object]:
    script = Path(sys.executable).with_name("facestream")
    done = subprocess.run(
        [str(script), "authorisation", "revoke", "--gallery", str(gallery), auth],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_the_matcher_purges_what_was_revoked_while_it_owned_the_gallery(
    tmp_path: Path, faces_dir: Path, vector_bytes: dict[str, bytes]
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    assert enroll(gallery, "rose", auth, faces_dir / "enroll" / "rose_leslie_1.jpg").status == 0
    settings = Settings(
        GallerySettings(gallery=str(gallery)),
        MatcherSettings(),
        AccountabilitySettings(),
        PolicySettings(purge_interval_s=0.3),
        AuditSettings(),
    )
    matching = open_matching(settings)  # owns the Milvus Lite directory, as the matcher service does
    try:
        revoked = _revoke_in_another_process(gallery, auth)
        assert revoked["status"] == "revoked"
        assert revoked["purged"] is False  # it could not open the gallery...
        assert not (gallery / "photos" / auth).exists()  # ...but the photos went at once
        deadline = time.monotonic() + 60
        while AuthorisationStore(gallery).get(auth).purged_at_ms is None:
            assert time.monotonic() < deadline, "the matcher's sweep never purged the revoked authorisation"
            time.sleep(0.1)
        assert matching.gallery.entries_of_authorisation(auth) == []
    finally:
        matching.close()
    assert containing(vector_bytes["rose_leslie_1"], gallery) == []
    purges = [r for r in audit_records(gallery) if r.action == "gallery.purge"]
    # Photos: erased by whichever process got there first; vectors: only by the gallery's owner.
    assert {p.authorisation_id for p in purges} == {auth}
    assert sum(int(p.objects["photos"]) for p in purges) == 1
    (complete,) = [p for p in purges if p.objects["complete"]]
    assert (complete.actor, complete.objects["entries"]) == ("facestream", 1)


def test_removing_an_identity_erases_its_vectors_and_keeps_the_rest(
    tmp_path: Path,
    faces_dir: Path,
    vector_bytes: dict[str, bytes],
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    assert enroll(gallery, "biden", auth, faces_dir / "enroll" / "biden_1.jpg").status == 0
    removed = run_cli("gallery", "remove", "--gallery", str(gallery), "--identity", "obama")
    assert removed.status == 0, removed.stderr
    assert removed.json() == [{"identity": "obama", "removed_entries": 1, "removed_photos": 1}]
    assert containing(vector_bytes["obama_1"], gallery) == []
    assert len(list((gallery / "photos" / auth).glob("*.enc"))) == 1
    # Biden's entry survived the rewrite of the partition and still matches.
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        image = cv2.imread(str(faces_dir / "enroll" / "biden_2.jpg"))
        face = Enroller(finder, embedder, g, GallerySettings()).dominant_face(image, "biden_2")
        hits = g.search(
            embedder.embed(face.aligned[None]), model_id=embedder.model_id, threshold=0.4, top_k=3
        )
    finally:
        g.close()
    assert [h.identity for h in hits[0]] == ["biden"]
    (record,) = [r for r in audit_records(gallery) if r.action == "gallery.remove"]
    assert (record.authorisation_id, record.objects["identity"]) == (auth, "obama")


def test_sweep_expires_once_and_is_idempotent(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery, valid_until="2099-01-01")
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        purger = Purger(gallery, open_audit_log(gallery, AuditSettings()), g)
        later = AuthorisationStore(gallery).get(auth).valid_until_ms + 1
        first = purger.sweep(at_ms=later)
        second = purger.sweep(at_ms=later + 1000)
    finally:
        g.close()
    assert first.expired == [auth] and first.purged == {auth: 1}
    assert second.expired == [] and second.purged == {}
    assert [r.action for r in audit_records(gallery)].count("authorisation.expire") == 1


def test_an_expiry_that_cannot_be_audited_is_not_stored_and_the_next_sweep_records_it(
    tmp_path: Path, faces_dir: Path
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery, valid_until="2099-01-01")
    later = AuthorisationStore(gallery).get(auth).valid_until_ms + 1
    with pytest.raises(AuditError):
        Purger(gallery, RefusingAudit()).sweep(at_ms=later)
    assert AuthorisationStore(gallery).get(auth).status == "active"  # not expired without its record
    assert "authorisation.expire" not in [r.action for r in audit_records(gallery)]

    report = Purger(gallery, open_audit_log(gallery, AuditSettings())).sweep(at_ms=later + 1000)
    assert report.expired == [auth]
    assert AuthorisationStore(gallery).get(auth).status == "expired"
    [expiry] = [r for r in audit_records(gallery) if r.action == "authorisation.expire"]
    assert expiry.authorisation_id == auth


@pytest.mark.slow  # about 15 s: a partition of more entries than one query returns
def test_removing_entries_from_a_partition_larger_than_one_query_erases_them_from_disk(
    tmp_path: Path,
) -> None:
    """Milvus Lite rewrites the partition without the removed entries; one query returns at most
    QUERY_LIMIT rows, and a partition larger than that used to be left as it was, the removed
    vectors on disk."""
    directory = tmp_path / "gallery"
    big = QUERY_LIMIT + 16
    vectors = np.random.default_rng(11).normal(size=(big, 8)).astype(np.float32)
    removed, kept = (5, big - 3), (7, big - 1)
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        gallery.add(synthetic_entries(big, "AUTH-BIG", FOREVER_MS, "e"), vectors)
        assert all(containing(vectors[i].tobytes(), directory) for i in removed)  # the needles are there

        gone = gallery.remove_entries([f"e{i}" for i in removed])

        assert sorted(e.entry_id for e in gone) == sorted(f"e{i}" for i in removed)
        assert gallery.count() == big - len(removed)
        for i in kept:  # the rest survived the rewrite, vectors intact
            (hits,) = gallery.search(vectors[i : i + 1], model_id="model-s", threshold=0.99, top_k=1)
            assert [h.identity for h in hits] == [f"e-{i}"]
    finally:
        gallery.close()
    for i in removed:
        assert containing(vectors[i].tobytes(), directory) == []


_REMOVE_AND_DIE = """
import os, sys, time
from pathlib import Path
import numpy as np
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings

directory, method, nth, removed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
journal_indexed = sys.argv[5] == "journal-indexed"  # die once Lite has indexed the journal, too
gallery = Gallery(GallerySettings(gallery=directory), dim=8)
calls = {"n": 0}
real = getattr(gallery._client, method)


def dies(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == nth:
        deadline = time.monotonic() + 60
        while journal_indexed and time.monotonic() < deadline:
            if list(Path(directory).glob("milvus.db/collections/*_rewrites/partitions/*/indexes/*")):
                break
            time.sleep(0.05)
        os._exit(9)
    return real(*args, **kwargs)


setattr(gallery._client, method, dies)
gallery.remove_entries(removed)
sys.exit(0)
"""


@pytest.mark.parametrize(
    ("method", "nth", "erased", "index_cut"),
    [
        ("insert", 2, False, False),  # copying the kept rows into the journal: no marker yet
        ("delete", 2, True, False),  # the journal complete (delete 1 cleared it first); nothing deleted yet
        ("delete", 2, True, True),  # the same, while Lite was writing the index files of both collections
        ("insert", 5, True, False),  # the partition dropped, the first of its two inserts done
    ],
    ids=["while-journalling", "before-deleting", "while-lite-wrote-its-index", "halfway-through-the-rewrite"],
)
def test_a_process_killed_while_removing_entries_loses_none_of_the_others(
    tmp_path: Path, method: str, nth: int, erased: bool, index_cut: bool
) -> None:
    """Milvus Lite erases by dropping the partition and inserting the rest again. A process that
    died in between lost the rest: the authorisation's other entries were gone. The rows kept are
    journalled first (inserts 1-2: the rows, 3: the marker), so the next open finishes the erasure;
    a death before the journal was complete leaves everything as it was and no journal behind.

    Lite writes a segment's index file in place, from a thread, after each flush: a death during
    that write (seen in a full run of the suite, in "before-deleting") left it cut short, and the
    gallery never opened again. `index_cut` cuts every index file as such a death would; the
    gallery opens all the same."""
    directory = tmp_path / "gallery"
    count = 9000  # two insert calls a copy (_WRITE_ROWS 8192): a death can fall between them
    vectors = np.random.default_rng(5).normal(size=(count, 8)).astype(np.float32)
    removed, kept = (3, count - 2), (0, 4, count - 1)
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        gallery.add(synthetic_entries(count, "AUTH-KEEP", FOREVER_MS, "e"), vectors)
    finally:
        gallery.close()

    died = subprocess.run(
        [sys.executable, "-c", _REMOVE_AND_DIE, str(directory), method, str(nth),
         ",".join(f"e{i}" for i in removed), "journal-indexed" if index_cut else "-"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert died.returncode == 9, died.stderr  # it died where it was made to, not elsewhere
    if index_cut:
        index_files = [p for p in directory.rglob("*.idx") if p.parent.name == "indexes"]
        assert {p.parts[-5] for p in index_files} == {"watchlist", "watchlist_rewrites"}
        for index_file in index_files:
            index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])

    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        assert gallery.count() == count - (len(removed) if erased else 0)
        ids = {e.entry_id for e in gallery.entries_of_authorisation("AUTH-KEEP")}
        gone = {f"e{i}" for i in removed}
        assert ids.isdisjoint(gone) if erased else ids >= gone
        for i in kept:
            (hits,) = gallery.search(vectors[i : i + 1], model_id="model-s", threshold=0.99, top_k=1)
            assert [h.identity for h in hits] == [f"e-{i}"]
    finally:
        gallery.close()
    assert not [p for p in directory.rglob("*") if "_rewrites" in p.name]  # the journal was dropped
    if erased:
        for i in removed:
            assert containing(vectors[i].tobytes(), directory) == []


def test_removals_and_purges_through_a_milvus_lite_server_erase_from_its_disk(
    milvus_server: MilvusServer,
) -> None:
    """The chart's default gallery is `milvus-lite server`: reached by URI like a Milvus server, so
    it was treated as one. Removing entries deleted and compacted, which on Milvus Lite erases
    nothing (the removed vectors stayed in its files), and purging an authorisation failed outright
    (`release_partitions`: UNIMPLEMENTED on Milvus Lite). The client now asks the server what it
    is: entries are removed by rewriting their partition, and a purge drops it without a release."""
    vectors = np.random.default_rng(9).normal(size=(40, 8)).astype(np.float32)
    removed, kept = (3, 7), (0, 39)
    gallery = Gallery(GallerySettings(gallery=milvus_server.uri), dim=8)
    try:
        assert gallery.is_server and gallery.is_lite
        gallery.add(synthetic_entries(40, "AUTH-SRV", FOREVER_MS, "e"), vectors)
        assert all(containing(vectors[i].tobytes(), milvus_server.data_dir) for i in removed)

        gone = gallery.remove_entries([f"e{i}" for i in removed])

        assert sorted(e.entry_id for e in gone) == sorted(f"e{i}" for i in removed)
        assert gallery.count() == 40 - len(removed)
        for i in kept:
            (hits,) = gallery.search(vectors[i : i + 1], model_id="model-s", threshold=0.99, top_k=1)
            assert [h.identity for h in hits] == [f"e-{i}"]
        for i in removed:
            assert containing(vectors[i].tobytes(), milvus_server.data_dir) == []
        assert all(containing(vectors[i].tobytes(), milvus_server.data_dir) for i in kept)

        assert gallery.remove_authorisation("AUTH-SRV") == 40 - len(removed)

        assert gallery.count() == 0
    finally:
        gallery.close()
    for i in kept:
        assert containing(vectors[i].tobytes(), milvus_server.data_dir) == []


def _age(photo: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(photo, (then, then))


def test_photos_no_entry_uses_are_erased_once_an_hour_old(tmp_path: Path, faces_dir: Path) -> None:
    """A removal killed after the gallery and before the photos, and an enrollment killed after
    keeping its photo and before its entry, leave photos no entry uses: the sweep erases them once
    an hour old (an enrollment in progress keeps its photo just before its entry), and says so."""
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    assert enroll(gallery, "biden", auth, faces_dir / "enroll" / "biden_1.jpg").status == 0
    vault = PhotoVault(gallery, load_photo_key(PhotoSettings(), gallery, single_operator=True))
    vault.put(auth, "killedenrollment", (faces_dir / "enroll" / "biden_2.jpg").read_bytes())
    vault.put(auth, "enrollmentrunning", (faces_dir / "enroll" / "obama_2.jpg").read_bytes())
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        (obama,) = g.entries_of("obama")
        (biden,) = g.entries_of("biden")
        g.remove_entries([obama.entry_id])  # the removal's first half; its photo stays
        for photo_id in (obama.photo_id, biden.photo_id, "killedenrollment"):
            _age(vault.path(auth, photo_id), 2 * 3600)
        purger = Purger(gallery, open_audit_log(gallery, AuditSettings()), g)
        assert purger.sweep().unused_photos == {}  # the enrollments' sweeps checked just now
        _age(gallery / "photos" / ".unused-checked", 601)
        first = purger.sweep()
        assert vault.photos_of(auth) == sorted([biden.photo_id, "enrollmentrunning"])
        # the next check comes 10 minutes later at the earliest: a photo orphaned meanwhile waits
        _age(vault.path(auth, "enrollmentrunning"), 2 * 3600)
        assert purger.sweep().unused_photos == {}
        _age(gallery / "photos" / ".unused-checked", 601)
        third = purger.sweep()
    finally:
        g.close()
    assert first.unused_photos == {auth: 2} and third.unused_photos == {auth: 1}
    assert vault.photos_of(auth) == [biden.photo_id]  # in use, however old
    erased = [r for r in audit_records(gallery) if r.action == "gallery.purge"]
    assert [(r.authorisation_id, r.actor, r.objects["photos"], r.objects["reason"]) for r in erased] == [
        (auth, "facestream", 2, "photo-without-entry"),
        (auth, "facestream", 1, "photo-without-entry"),
    ]
