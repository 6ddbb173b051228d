"""Appending to the audit log: the chain, checkpoints, the head seal, keys, refusals, concurrent writers."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from facestream.accountability.audit import Actor, AuditLog, open_audit_log, read_verified
from facestream.accountability.audit_chain import CHECKPOINT, canonical, genesis_hash
from facestream.accountability.audit_keys import AuditSettings, dev_key_path, load_key_ring
from facestream.accountability.audit_verify import Verdict, verify_file_bytes
from facestream.errors import AuditError
from tests.fixtures.audit import AuditKey, AuditLogFactory, StepClock

OFFICER = Actor("olga", "officer")


def verify_dir(directory: Path, key: AuditKey) -> Verdict:
    head = directory / "audit.head"
    return verify_file_bytes(
        (directory / "audit.log").read_bytes(), head.read_bytes() if head.exists() else None, key.ring
    )


def test_records_are_chained_canonical_lines_with_signed_checkpoints(
    make_audit_log: AuditLogFactory, audit_gallery: Path, audit_key: AuditKey
) -> None:
    log = make_audit_log(every=4, clock=StepClock(1_800_000_000_000, 10))
    returned = [
        log.append(
            actor=OFFICER, action="gallery.enroll", authorisation_id="auth_1", objects={"entry_ids": [i]}
        )
        for i in range(7)
    ]

    lines = (audit_gallery / "audit.log").read_bytes().splitlines()
    stored = [json.loads(line) for line in lines]
    assert [r["seq"] for r in stored] == list(range(len(stored)))
    assert all(canonical(r) == line for r, line in zip(stored, lines, strict=True))
    assert stored[0]["prev"] == genesis_hash(stored[0]["chain"])
    for before, after in itertools.pairwise(stored):
        assert after["prev"] == before["hash"]
        body = {k: v for k, v in after.items() if k != "hash"}
        assert hashlib.sha256(canonical(body)).hexdigest() == after["hash"]
    # A checkpoint is every 4th record (seq 3, 7), written by the log itself.
    checkpoints = [r for r in stored if r["action"] == CHECKPOINT]
    assert [c["seq"] for c in checkpoints] == [3, 7]
    assert {(c["actor"], c["role"]) for c in checkpoints} == {("facestream", "system")}
    # What append returned is what was stored, and the head seal names the last record.
    assert [(r.seq, r.hash) for r in returned] == [
        (r["seq"], r["hash"]) for r in stored if r["action"] != CHECKPOINT
    ]
    head = json.loads((audit_gallery / "audit.head").read_bytes())
    assert (head["seq"], head["hash"]) == (stored[-1]["seq"], stored[-1]["hash"])
    verdict = verify_dir(audit_gallery, audit_key)
    assert verdict.ok and verdict.records == 9 and verdict.checkpoints == 2


def test_explicit_checkpoint_seals_the_head_once(
    make_audit_log: AuditLogFactory, audit_gallery: Path
) -> None:
    log = make_audit_log(every=100)
    log.append(actor=OFFICER, action="gallery.enroll")
    log.checkpoint()
    log.checkpoint()  # nothing new since the last one: no second checkpoint
    actions = [r.action for r in log.records()]
    assert actions == ["gallery.enroll", CHECKPOINT]


@pytest.mark.parametrize(
    ("objects", "why"),
    [
        ({"photo": b"\xff\xd8\xff\xe0"}, "bytes"),
        ({"photo": "iVBORw0KGgo" + "A" * 2000}, "longer than"),
        ({"embedding": [0.01 * i for i in range(512)]}, "vector"),
        ({"embedding": np.zeros(512, dtype=np.float32)}, "ndarray"),
        ({"score": float("nan")}, "finite"),
        ({"a": {"b": {"c": {"d": 1}}}}, "nested"),
    ],
)
def test_images_vectors_and_odd_values_are_refused_and_nothing_is_written(
    make_audit_log: AuditLogFactory, audit_gallery: Path, objects: dict[str, object], why: str
) -> None:
    log = make_audit_log()
    log.append(actor=OFFICER, action="gallery.enroll", objects={"identity": "Jane Roe", "entries": 1})
    before = (audit_gallery / "audit.log").read_bytes()
    with pytest.raises(AuditError, match=why):
        log.append(actor=OFFICER, action="candidate.open", objects=objects)
    assert (audit_gallery / "audit.log").read_bytes() == before


@pytest.mark.parametrize("action", ["Gallery.Enroll", "enroll", "gallery enroll", "", CHECKPOINT])
def test_malformed_or_reserved_actions_are_refused(make_audit_log: AuditLogFactory, action: str) -> None:
    with pytest.raises(AuditError):
        make_audit_log().append(actor=OFFICER, action=action)


def test_a_damaged_tail_stops_appending_rather_than_chaining_onto_it(
    make_audit_log: AuditLogFactory, audit_gallery: Path
) -> None:
    make_audit_log().append(actor=OFFICER, action="gallery.enroll")
    path = audit_gallery / "audit.log"
    path.write_bytes(path.read_bytes()[:-20])  # a cut last record
    damaged = path.read_bytes()
    with pytest.raises(AuditError, match="audit verify"):
        make_audit_log().append(actor=OFFICER, action="gallery.remove")
    assert path.read_bytes() == damaged


def test_an_emptied_log_with_a_seal_is_not_silently_restarted(
    make_audit_log: AuditLogFactory, audit_gallery: Path
) -> None:
    make_audit_log().append(actor=OFFICER, action="gallery.enroll")
    (audit_gallery / "audit.log").write_bytes(b"")
    with pytest.raises(AuditError, match="empty"):
        make_audit_log().append(actor=OFFICER, action="gallery.enroll")


def test_the_key_from_the_environment_signs_and_its_public_half_is_published(
    audit_env: AuditKey, audit_gallery: Path
) -> None:
    log = open_audit_log(audit_gallery, AuditSettings())
    for _ in range(AuditSettings().audit_checkpoint_every - 1):  # the checkpoint is the 100th record
        log.append(actor=OFFICER, action="identify.run", objects={"faces": 3})
    assert not dev_key_path(audit_gallery).exists()
    published = load_key_ring([audit_gallery / "audit.pub"], "gallery")
    assert set(published.keys) == set(audit_env.ring.keys)
    verdict, records = read_verified(audit_gallery, audit_env.ring)
    assert verdict.checkpoints == 1 and set(verdict.key_ids) == set(audit_env.ring.keys)
    assert records[-1].action == CHECKPOINT


def test_without_a_key_a_private_dev_key_is_made_beside_the_gallery(
    audit_gallery: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("FACESTREAM_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FACESTREAM_AUDIT_KEY_FILE", raising=False)
    open_audit_log(audit_gallery, AuditSettings()).append(actor=OFFICER, action="gallery.enroll")
    key = dev_key_path(audit_gallery)
    assert key.parent == audit_gallery.parent  # not inside: a copy of the gallery does not carry it
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "DEVELOPMENT key" in caplog.text
    # A dev key others can read is refused rather than used.
    key.chmod(0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        open_audit_log(audit_gallery, AuditSettings()).append(actor=OFFICER, action="gallery.enroll")


def test_a_log_signed_with_another_key_does_not_verify(
    make_audit_log: AuditLogFactory, audit_gallery: Path, tmp_path: Path
) -> None:
    from tests.fixtures.audit import make_key

    log = make_audit_log(every=3)
    for _ in range(3):
        log.append(actor=OFFICER, action="gallery.enroll")
    other = make_key(tmp_path, "other")
    verdict = verify_dir(audit_gallery, other)
    assert verdict.problem is not None and verdict.problem.line == 3
    assert "unknown key" in verdict.problem.reason


def test_threads_and_processes_appending_at_once_keep_one_chain(
    audit_env: AuditKey, audit_gallery: Path
) -> None:
    """Two OS processes (as two CLI commands would) and two threads append concurrently."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from facestream.accountability.audit import Actor, open_audit_log
        from facestream.accountability.audit_keys import AuditSettings
        log = open_audit_log(Path(sys.argv[1]), AuditSettings())
        for i in range(60):
            log.append(actor=Actor(sys.argv[2], "officer"), action="gallery.enroll", objects={"n": i})
        """
    )
    env = {**os.environ, "FACESTREAM_AUDIT_KEY": audit_env.seed_b64}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(audit_gallery), f"proc{i}"], env=env)
        for i in range(2)
    ]
    log = open_audit_log(audit_gallery, AuditSettings())

    def writer(name: str) -> None:
        for i in range(40):
            log.append(actor=Actor(name, "reviewer"), action="review.confirm", objects={"n": i})

    threads = [threading.Thread(target=writer, args=(f"thread{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    verdict, records = read_verified(audit_gallery, audit_env.ring)
    regular = [r for r in records if r.action != CHECKPOINT]
    assert len(regular) == 2 * 60 + 2 * 40
    by_actor = {
        name: sorted(r.objects["n"] for r in regular if r.actor == name)
        for name in {r.actor for r in regular}
    }
    assert by_actor == {
        "proc0": list(range(60)),
        "proc1": list(range(60)),
        "thread0": list(range(40)),
        "thread1": list(range(40)),
    }
    assert verdict.last is not None and verdict.last.seq == len(records) - 1


def test_the_interface_callers_use(audit_env: AuditKey, audit_gallery: Path) -> None:
    """open_audit_log(dir, settings).append(actor=, action=, authorisation_id=, objects=) -> AuditRecord."""
    rec = open_audit_log(audit_gallery / "new", AuditSettings()).append(
        actor=Actor("ada", "authoriser"),
        action="authorisation.grant",
        authorisation_id="auth_0123456789abcdef",
        objects={"case_ref": "C-1", "cameras": ["cam-1", "cam-2"], "valid_until_ms": 1},
    )
    assert (rec.seq, rec.actor, rec.role, rec.action) == (0, "ada", "authoriser", "authorisation.grant")
    assert rec.authorisation_id == "auth_0123456789abcdef"
    assert dict(rec.objects) == {"case_ref": "C-1", "cameras": ["cam-1", "cam-2"], "valid_until_ms": 1}
    assert isinstance(AuditLog(audit_gallery / "new" / "audit.log").path, Path)


def test_show_filters_by_action_authorisation_actor_and_time(
    make_audit_log: AuditLogFactory, audit_gallery: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facestream.accountability.clock import parse_instant
    from facestream.cli import main

    start = parse_instant("2027-01-01T00:00:00Z", "start")
    log = make_audit_log(every=100, clock=StepClock(start, 3_600_000))  # one record an hour
    log.append(actor=Actor("ada", "authoriser"), action="authorisation.grant", authorisation_id="auth_a")
    log.append(actor=OFFICER, action="gallery.enroll", authorisation_id="auth_a")
    log.append(actor=Actor("rev", "reviewer"), action="review.confirm", authorisation_id="auth_a")
    log.append(actor=Actor("rev", "reviewer"), action="review.reject", authorisation_id="auth_b")
    log.append(actor=OFFICER, action="gallery.enroll", authorisation_id="auth_b")

    def show(*flags: str) -> list[tuple[int, str]]:
        assert main(["audit", "show", "--gallery", str(audit_gallery), *flags]) == 0
        return [(r["seq"], r["action"]) for r in map(json.loads, capsys.readouterr().out.splitlines())]

    assert show("--action", "review.") == [(2, "review.confirm"), (3, "review.reject")]
    assert show("--action", "gallery.enroll", "--authorisation", "auth_b") == [(4, "gallery.enroll")]
    assert show("--by", "olga") == [(1, "gallery.enroll"), (4, "gallery.enroll")]
    assert show("--from", "2027-01-01T01:00Z", "--to", "2027-01-01T03:00Z") == [
        (1, "gallery.enroll"),
        (2, "review.confirm"),
    ]
