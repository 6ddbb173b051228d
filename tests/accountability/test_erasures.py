"""Erasures and their audit records: none goes unrecorded when a process dies or the audit log is down.

A real embedded Milvus Lite gallery, the real audit log, and processes killed at the point where
it matters (accountability/erasures.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from facestream.accountability.audit import Actor, open_audit_log
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.erasures import DIRECTORY, ErasureRecord, RecordedErasures
from facestream.accountability.photos import KEY_BYTES, PhotoVault, photos_of
from facestream.accountability.purge import Purger
from facestream.errors import AuditError
from facestream.gallery.store import FOREVER_MS, Gallery
from facestream.settings import GallerySettings
from tests.fixtures.accountability import RefusingAudit, audit_records, grant_authorisation
from tests.fixtures.milvus import synthetic_entries

pytestmark = pytest.mark.usefixtures("accountability_env")

AUTH = "AUTH-E"
OTHER_AUTH = "AUTH-F"
OFFICER = Actor("officer-7", "officer")
ERASED = ("e1", "e3")


def gallery_with_entries(directory: Path, count: int = 6) -> None:
    """Entries e0.. of AUTH, and as many f0.. of OTHER_AUTH (another partition)."""
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        vectors = np.random.default_rng(3).normal(size=(2 * count, 8)).astype(np.float32)
        gallery.add(synthetic_entries(count, AUTH, FOREVER_MS, "e"), vectors[:count])
        gallery.add(synthetic_entries(count, OTHER_AUTH, FOREVER_MS, "f"), vectors[count:])
    finally:
        gallery.close()


def removal() -> ErasureRecord:
    return ErasureRecord("gallery.remove", ERASED, AUTH, {"identity": "e-1", "entries": list(ERASED)})


def erase_and_die(directory: Path, where: str, nth: int, records: list[ErasureRecord] | str) -> None:
    """Erase in a child process that dies (os._exit) at the `nth` call of `where`: a method of the
    gallery's client, or "audit" for the audit log's append. `records` may be an authorisation's
    id instead: the child purges it."""
    as_json = (
        records
        if isinstance(records, str)
        else [
            {
                "action": r.action,
                "entry_ids": r.entry_ids,
                "authorisation_id": r.authorisation_id,
                "objects": r.objects,
            }
            for r in records
        ]
    )
    died = subprocess.run(
        [sys.executable, "-c", _ERASE_AND_DIE, str(directory), where, str(nth), json.dumps(as_json)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert died.returncode == 9, died.stderr  # it died where it was made to, not elsewhere


def sweep(directory: Path) -> tuple[int, set[str]]:
    """Open the gallery and sweep, as every command does; what the sweep recorded, what is left."""
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        report = Purger(directory, open_audit_log(directory, AuditSettings()), gallery).sweep()
        return report.recorded_after_restart, {e.entry_id for e in gallery.entries()}
    finally:
        gallery.close()


_ERASE_AND_DIE = """
import json, os, sys
from pathlib import Path
from facestream.accountability.audit import Actor, AuditLog, open_audit_log
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.erasures import ErasureRecord, RecordedErasures
from facestream.accountability.purge import SYSTEM, Purger
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings

directory, where, nth, records = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
calls = {"n": 0}
owner, method = (AuditLog, "append") if where == "audit" else (gallery._client, where)
real = getattr(owner, method)


def dies(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == nth:
        os._exit(9)
    return real(*args, **kwargs)


setattr(owner, method, dies)
audit = open_audit_log(directory, AuditSettings())
if isinstance(records, str):  # an authorisation's id: purge it, as a sweep does
    Purger(directory, audit, gallery).purge(AuthorisationStore(directory).get(records), SYSTEM)
else:
    RecordedErasures(directory, audit).erase(
        gallery,
        Actor("officer-7", "officer"),
        [ErasureRecord(r["action"], tuple(r["entry_ids"]), r["authorisation_id"], r["objects"])
         for r in records],
    )
sys.exit(0)
"""


@pytest.mark.parametrize(
    ("where", "nth", "erased"),
    [
        ("insert", 1, False),  # copying the partition's kept rows: nothing erased yet
        ("delete", 2, True),  # the kept rows journalled: the next open finishes the erasure
        ("audit", 1, True),  # erased, killed before its audit record
    ],
    ids=["before-erasing", "mid-erasure", "before-the-audit-record"],
)
def test_an_erasure_whose_process_died_is_recorded_by_the_next_sweep_once_its_entries_are_gone(
    tmp_path: Path, where: str, nth: int, erased: bool
) -> None:
    """Before, an erasure and its record were two writes: a process killed between them left
    entries erased (on Lite, by the next open, which finishes the rewrite) that the audit log never
    showed. Now the sweep records it, as the officer who began it; an erasure that never began
    leaves no record."""
    directory = tmp_path / "gallery"
    gallery_with_entries(directory)

    erase_and_die(directory, where, nth, [removal()])
    assert [r.action for r in audit_records(directory)].count("gallery.remove") == 0

    recorded, left = sweep(directory)

    assert left.isdisjoint(ERASED) if erased else left >= set(ERASED)
    assert len(left) == 12 - (len(ERASED) if erased else 0)
    removals = [r for r in audit_records(directory) if r.action == "gallery.remove"]
    assert recorded == len(removals) == (1 if erased else 0)
    for record in removals:
        assert (record.actor, record.role, record.authorisation_id) == ("officer-7", "officer", AUTH)
        assert record.objects["entries"] == list(ERASED)
        assert record.objects["recorded_after_restart"] is True
        assert "not_erased" not in record.objects
    assert list((directory / DIRECTORY).glob("*")) == []
    assert sweep(directory)[0] == 0  # recorded once


def test_a_record_whose_entries_went_only_in_part_says_which_stayed(tmp_path: Path) -> None:
    """One record over two partitions (as an expiry sweep's is): killed while copying the second
    partition's kept rows, the first partition's erasure is finished by the next open and the
    second never began (partitions go in the order of their names, hashes of the authorisation
    ids). The record is appended, naming the entry that was not erased."""
    directory = tmp_path / "gallery"
    gallery_with_entries(directory)
    expiry = ErasureRecord("gallery.purge", ("e2", "f4"), None, {"entries": 2, "reason": "entry-expired"})

    erase_and_die(directory, "insert", 3, [expiry])  # inserts 1-2: the first partition's copy

    recorded, left = sweep(directory)
    stayed = [i for i in expiry.entry_ids if i in left]
    assert len(stayed) == 1  # whichever partition was copied first went
    (record,) = [r for r in audit_records(directory) if r.action == "gallery.purge"]
    assert recorded == 1
    assert (record.objects["reason"], record.objects["not_erased"]) == ("entry-expired", stayed)


def test_an_authorisations_purge_killed_before_its_record_is_recorded_with_what_it_erased(
    tmp_path: Path,
) -> None:
    """A purge drops the authorisation's partition in one call. Killed before its record, the next
    sweep purged again and recorded what was left by then: 0 entries, the real count lost. Now the
    record kept before the drop is appended first, then the purge done again is recorded too."""
    directory = tmp_path / "gallery"
    auth = grant_authorisation(directory)
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        vectors = np.random.default_rng(4).normal(size=(3, 8)).astype(np.float32)
        gallery.add(synthetic_entries(3, auth, FOREVER_MS, "g"), vectors)
    finally:
        gallery.close()
    AuthorisationStore(directory).revoke(auth, "authoriser-1")

    erase_and_die(directory, "audit", 1, auth)

    recorded, left = sweep(directory)
    assert recorded == 1 and not left & {"g0", "g1", "g2"}
    purges = [r.objects for r in audit_records(directory) if r.action == "gallery.purge"]
    assert [(p["entries"], p["reason"], p.get("recorded_after_restart")) for p in purges] == [
        (3, "revoked", True),  # the killed purge, as it would have been recorded
        (0, "revoked", None),  # the sweep's own purge, which found nothing left
    ]
    assert AuthorisationStore(directory).get(auth).purged_at_ms is not None


def keep_photos(directory: Path, auth: str, count: int) -> list[str]:
    """`count` encrypted photos of `auth` in the vault, as enrolling keeps them."""
    vault = PhotoVault(directory, os.urandom(KEY_BYTES))
    ids = [f"{n:032x}" for n in range(count)]
    for photo_id in ids:
        vault.put(auth, photo_id, b"\xff\xd8 a photo")
    return ids


def test_a_purge_of_photos_alone_killed_before_its_record_is_recorded_with_the_photos_it_erased(
    tmp_path: Path,
) -> None:
    """An authorisation whose entries were all removed before still has its kept photos. Its purge
    erased them before its record was kept: killed there, nothing showed the photos had gone (no
    entry's absence could) and the next sweep recorded a purge of 0 photos. Now the photos' ids are
    in the record kept before, and their absence shows the erasure happened."""
    directory = tmp_path / "gallery"
    auth = grant_authorisation(directory)
    Gallery(GallerySettings(gallery=str(directory)), dim=8).close()
    keep_photos(directory, auth, 3)
    AuthorisationStore(directory).revoke(auth, "authoriser-1")

    erase_and_die(directory, "audit", 1, auth)
    assert photos_of(directory, auth) == []

    recorded, _ = sweep(directory)
    purges = [r.objects for r in audit_records(directory) if r.action == "gallery.purge"]
    assert recorded == 1
    assert [(p["entries"], p["photos"], p.get("recorded_after_restart")) for p in purges] == [
        (0, 3, True),  # the killed purge, as it would have been recorded
        (0, 0, None),  # the sweep's own purge, which found nothing left
    ]
    assert "photos_not_erased" not in purges[0]


def test_a_purge_without_the_gallery_whose_record_was_refused_is_recorded_by_a_sweep_without_it(
    tmp_path: Path,
) -> None:
    """`authorisation revoke` while a matcher owns the Lite gallery erases the photos only; its record,
    refused by the audit log, is appended by the next sweep, which needs no gallery to see the photos
    gone. A record that names entries waits for a sweep that has the gallery."""
    directory = tmp_path / "gallery"
    auth = grant_authorisation(directory)
    keep_photos(directory, auth, 2)
    AuthorisationStore(directory).revoke(auth, "authoriser-1")
    with pytest.raises(AuditError):
        Purger(directory, RefusingAudit(), None).purge(AuthorisationStore(directory).get(auth), OFFICER)
    assert photos_of(directory, auth) == []
    waiting = directory / DIRECTORY / "waiting.json"
    waiting.write_text(json.dumps({
        "actor": {"name": "officer-7", "role": "officer"}, "began_at_ms": 1,
        "records": [
            {"action": "gallery.remove", "entry_ids": ["e1"], "authorisation_id": AUTH, "objects": {}},
        ],
    }))  # fmt: skip

    appended = RecordedErasures(directory, open_audit_log(directory, AuditSettings())).finish_pending(None)

    assert appended == 1
    (purge,) = [r for r in audit_records(directory) if r.action == "gallery.purge"]
    assert (purge.actor, purge.authorisation_id) == ("officer-7", auth)
    assert (purge.objects["photos"], purge.objects["complete"], purge.objects["recorded_after_restart"]) == (
        2, False, True,
    )  # fmt: skip
    assert [f.name for f in (directory / DIRECTORY).glob("*.json")] == ["waiting.json"]


def test_an_erasure_the_audit_log_refused_is_recorded_once_it_accepts(tmp_path: Path) -> None:
    """Erasing comes first (data past its time must go even while the audit store is down); the
    record waits in its file until an audit log takes it."""
    directory = tmp_path / "gallery"
    gallery_with_entries(directory)
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        with pytest.raises(AuditError):
            RecordedErasures(directory, RefusingAudit()).erase(gallery, OFFICER, [removal()])
        assert gallery.entries_with_ids(list(ERASED)) == []
        with pytest.raises(AuditError):  # still down: the record stays waiting
            Purger(directory, RefusingAudit(), gallery).sweep()
        report = Purger(directory, open_audit_log(directory, AuditSettings()), gallery).sweep()
    finally:
        gallery.close()
    assert report.recorded_after_restart == 1
    (record,) = [r for r in audit_records(directory) if r.action == "gallery.remove"]
    assert (record.actor, record.objects["entries"]) == ("officer-7", list(ERASED))


def test_an_audit_log_that_took_one_record_of_an_erasure_and_refused_the_next_is_given_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two identities removed in one erasure; the audit log takes the first record, then goes down.
    The sweep once it is back appends the second only: the log holds each removal once."""
    directory = tmp_path / "gallery"
    gallery_with_entries(directory)
    audit = open_audit_log(directory, AuditSettings())
    real_append = audit.append
    taken: list[object] = []

    def take_one_then_refuse(**kwargs: object) -> object:
        if taken:
            raise AuditError("the audit store is unavailable")
        taken.append(real_append(**kwargs))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(audit, "append", take_one_then_refuse)
    second = ErasureRecord("gallery.remove", ("e4",), AUTH, {"identity": "e-4", "entries": ["e4"]})
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    try:
        with pytest.raises(AuditError):
            RecordedErasures(directory, audit).erase(gallery, OFFICER, [removal(), second])
        assert gallery.entries_with_ids([*ERASED, "e4"]) == []
    finally:
        gallery.close()
    recorded, _ = sweep(directory)
    assert recorded == 1
    removals = [r for r in audit_records(directory) if r.action == "gallery.remove"]
    assert [r.objects["identity"] for r in removals] == ["e-1", "e-4"]
    assert [bool(r.objects.get("recorded_after_restart")) for r in removals] == [False, True]
    assert list((directory / DIRECTORY).iterdir()) == []  # no file, and no temporary left behind


def test_a_sweep_leaves_the_records_of_an_erasure_under_way_to_its_process(tmp_path: Path) -> None:
    """The file of an erasure whose process lives is locked: a sweep meanwhile (the matcher's, every
    purge interval) must neither record it a second time nor drop it."""
    directory = tmp_path / "gallery"
    gallery_with_entries(directory)
    gallery = Gallery(GallerySettings(gallery=str(directory)), dim=8)
    audit = open_audit_log(directory, AuditSettings())
    kept, go_on = threading.Event(), threading.Event()
    real_remove = gallery.remove_entries

    def remove_when_told(entry_ids: list[str]) -> object:
        kept.set()
        go_on.wait(60)
        return real_remove(entry_ids)

    gallery.remove_entries = remove_when_told  # type: ignore[method-assign]
    erasing = threading.Thread(
        target=RecordedErasures(directory, audit).erase, args=(gallery, OFFICER, [removal()])
    )
    try:
        erasing.start()
        assert kept.wait(60)
        with_entries_gone = Gallery(GallerySettings(gallery=str(tmp_path / "empty")), dim=8)
        try:  # a gallery without the entries: a sweep that ignored the lock would record the erasure
            assert RecordedErasures(directory, audit).finish_pending(with_entries_gone) == 0
        finally:
            with_entries_gone.close()
        assert len(list((directory / DIRECTORY).glob("*.json"))) == 1
    finally:
        go_on.set()
        erasing.join(120)
        gallery.close()
    (record,) = [r for r in audit_records(directory) if r.action == "gallery.remove"]
    assert "recorded_after_restart" not in record.objects
    assert list((directory / DIRECTORY).glob("*")) == []
