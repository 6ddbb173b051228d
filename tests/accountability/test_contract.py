"""The issue's command contract, through the installed `facestream` script as an operator types it
(no --actor: a fresh gallery is in single-operator mode): grant → enroll → identify → revoke →
no match and data gone, and the audit log that records it all verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.accountability import audit_records

pytestmark = [pytest.mark.usefixtures("accountability_env"), pytest.mark.subprocess]


def facestream(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("facestream")
    env = {k: v for k, v in os.environ.items() if k != "FACESTREAM_ACTOR"}
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, env=env)


def test_grant_enroll_identify_revoke(tmp_path: Path, faces_dir: Path) -> None:
    gallery = str(tmp_path / "gallery")
    refused = facestream(
        "gallery", "enroll", "--gallery", gallery, "--identity", "obama",
        "--authorisation", "auth_0123456789abcdef", str(faces_dir / "enroll" / "obama_1.jpg"),
    )  # fmt: skip
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "facestream: error: no authorisation 'auth_0123456789abcdef'" in refused.stderr

    granted = facestream(
        "authorisation", "grant", "--gallery", gallery, "--case", "K-1", "--basis", "court order",
        "--purpose", "wanted", "--issued-by", "Court", "--valid-until", "2099-12-31T00:00:00Z",
        "--valid-from", "2000-01-01T00:00:00Z",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    auth = json.loads(granted.stdout)["id"]

    enrolled = facestream(
        "gallery", "enroll", "--gallery", gallery, "--identity", "obama", "--authorisation", auth,
        str(faces_dir / "enroll" / "obama_1.jpg"), str(faces_dir / "enroll" / "obama_2.jpg"),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr

    probe = str(faces_dir / "probe" / "obama.jpg")
    found = facestream("identify", "--gallery", gallery, probe)
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["identity"] for line in found.stdout.splitlines()] == ["obama"]

    revoked = facestream("authorisation", "revoke", "--gallery", gallery, auth)
    assert revoked.returncode == 0, revoked.stderr
    again = facestream("identify", "--gallery", gallery, probe)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert not (Path(gallery) / "photos" / auth).exists()

    verified = facestream("audit", "verify", "--gallery", gallery)
    assert verified.returncode == 0, verified.stderr
    actions = [r.action for r in audit_records(Path(gallery)) if r.action != "audit.checkpoint"]
    assert actions == [
        "authorisation.grant",
        "gallery.enroll",
        "candidate.open",
        "identify.run",
        "authorisation.revoke",
        "gallery.purge",
        "identify.run",
    ]
    assert all(
        r.role.endswith(":single-operator") for r in audit_records(Path(gallery)) if r.actor != "facestream"
    )
