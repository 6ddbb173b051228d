"""Nothing of the people who did not match is kept: after `identify` over enrolled and unenrolled
people, no file anywhere the run could write was created or changed except the audit log, and the
audit log names only the enrolled people who matched (the issue's privacy rule, GDPR Art. 25)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facestream.accountability.audit import AuditRecord
from tests.fixtures.accountability import audit_records, enroll, files_under, grant_authorisation

pytestmark = pytest.mark.usefixtures("accountability_env")

AUDIT_LOG_FILES = {"audit.log", "audit.head"}
"""The log and its signed seal: the only files a search may change."""


def test_identify_over_unenrolled_people_leaves_nothing_of_them(
    tmp_path: Path, faces_dir: Path, walk_past_video: Path
) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    for identity in ("obama", "biden", "rose_leslie"):
        photos = sorted((faces_dir / "enroll").glob(f"{identity}_*.jpg"))
        assert enroll(gallery, identity, auth, *photos).status == 0
    # Where the run could write: the gallery and its siblings (keys), its cwd, its TMPDIR, its HOME.
    run_cwd, run_tmp, run_home = (tmp_path / name for name in ("cwd", "tmp", "home"))
    for d in (run_cwd, run_tmp, run_home):
        d.mkdir()
    # Camera ids come from file names: give the stills neutral names, so that any trace of the
    # unenrolled people in the log below could only have come from their faces.
    stills = tmp_path / "cameras"
    stills.mkdir()
    for n, photo in enumerate(
        [
            faces_dir / "probe" / "kit_harington_unenrolled.jpg",  # nobody enrolled
            faces_dir / "scenes" / "kit_harington_and_rose_leslie.jpg",  # one enrolled, one not
            faces_dir / "scenes" / "obama_and_biden.jpg",  # a third, unenrolled person behind them
        ]
    ):
        shutil.copy(photo, stills / f"cam{n}.jpg")
    sources = [stills, walk_past_video]  # the video: obama, then kit, then alex (not enrolled here)
    before = files_under(tmp_path)
    records_before = len(audit_records(gallery))

    script = Path(sys.executable).with_name("facestream")
    run = subprocess.run(
        [str(script), "identify", "--gallery", str(gallery), *(str(s) for s in sources)],
        cwd=run_cwd,
        # As an operator's shell gives it: facestream itself must switch onnxruntime's telemetry off.
        env={
            **{k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"},
            "TMPDIR": str(run_tmp),
            "HOME": str(run_home),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    found = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted({c["identity"] for c in found}) == ["biden", "obama", "rose_leslie"]

    after = files_under(tmp_path)
    created = sorted(str(p.relative_to(tmp_path)) for p in set(after) - set(before))
    changed = sorted(str(p.relative_to(tmp_path)) for p in set(after) & set(before) if after[p] != before[p])
    assert created == []
    assert changed == sorted(f"gallery/{name}" for name in AUDIT_LOG_FILES)
    assert all(after[p].startswith(before[p]) for p in before if p.name == "audit.log")  # appended only

    new: list[AuditRecord] = audit_records(gallery)[records_before:]
    opened = [r for r in new if r.action == "candidate.open"]
    (run_record,) = [r for r in new if r.action == "identify.run"]
    assert {r.action for r in new} <= {"candidate.open", "identify.run", "audit.checkpoint"}
    assert sorted(r.objects["identity"] for r in opened) == sorted(c["identity"] for c in found)
    assert {r.objects["candidate_id"] for r in opened} == {c["candidate_id"] for c in found}
    assert all(r.authorisation_id == auth for r in opened)
    # The search record holds counts and ids only: more faces were searched than matched...
    assert run_record.objects["faces"] > len(found)
    assert run_record.objects["candidates"] == len(found)
    assert run_record.objects["authorisations"] == [auth]
    # ...and nothing names or describes anyone else.
    log_text = (gallery / "audit.log").read_text()
    for absent in ("kit", "harington", "alex"):
        assert absent not in log_text.lower()
