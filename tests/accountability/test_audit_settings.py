"""The audit log is signed as the command was configured: flags > env > defaults, like every other
setting (issue 14), and a command that writes no record offers no signing flag.

The cadence is what is cheap to see: with `audit_checkpoint_every` N, the log's first checkpoint is
its record seq N-1 (after N-1 records), so 3, 4 and 5 each leave their own mark on six records.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from facestream.services import matcher, review

from facestream.accountability.audit import LOG_FILE, AuditLog
from facestream.accountability.audit_chain import CHECKPOINT
from facestream.accountability.audit_keys import AuditSettings, dev_key_path, key_id
from facestream.runtime.service import parse_settings
from tests.fixtures.accountability import run_cli
from tests.fixtures.audit import AuditKey, make_key

pytestmark = pytest.mark.usefixtures("accountability_env")

RECORDS = 6


def add_rules(gallery: Path, *flags: str, times: int = RECORDS) -> None:
    """`rules add` `times` times: one audit record each (single-operator mode, no gallery opened)."""
    for n in range(times):
        result = run_cli(
            "rules", "add", "--gallery", str(gallery), "--until", "2099-01-01T00:00:00Z",
            "--reason", f"test {n}", *flags,
        )  # fmt: skip
        assert result.status == 0, result.stderr


def checkpoints(gallery: Path) -> list[int]:
    """The seq of every checkpoint in the gallery's log."""
    return [r.seq for r in AuditLog(gallery / LOG_FILE).records() if r.action == CHECKPOINT]


def cadence(every: int) -> list[int]:
    """Where the checkpoints of RECORDS records fall at that cadence (every-1 records, then one)."""
    return [seq for seq in range(RECORDS + RECORDS // (every - 1)) if (seq + 1) % every == 0]


def verify(gallery: Path, key: AuditKey, *flags: str) -> dict[str, object]:
    trusted = ("--public-key", str(key.public_file))
    result = run_cli("audit", "verify", "--gallery", str(gallery), *trusted, *flags)
    assert result.status == 0, result.stderr
    (verdict,) = result.json()
    return verdict


def test_the_cadence_flag_reaches_the_log_and_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert checkpoints(tmp_path / "none") == [] and cadence(3) == [2, 5, 8]
    default = tmp_path / "default"
    add_rules(default)
    assert checkpoints(default) == []  # 100 by default
    monkeypatch.setenv("FACESTREAM_AUDIT_CHECKPOINT_EVERY", "4")
    by_env = tmp_path / "env"
    add_rules(by_env)
    assert checkpoints(by_env) == cadence(4) == [3, 7]
    flagged = tmp_path / "flag"
    add_rules(flagged, "--audit-checkpoint-every", "3")
    assert checkpoints(flagged) == cadence(3)


def test_the_key_file_flag_signs_the_log(tmp_path: Path) -> None:
    key = make_key(tmp_path)
    pem = tmp_path / "audit-key.pem"
    pem.write_text(key.private_pem)
    pem.chmod(0o600)
    gallery = tmp_path / "gallery"
    add_rules(gallery, "--audit-key-file", str(pem), "--audit-checkpoint-every", "3")
    verdict = verify(gallery, key)
    assert verdict["ok"] is True and verdict["checkpoints"] == len(cadence(3))
    assert verdict["key_ids"] == [key_id(key.private.public_key())]
    assert not dev_key_path(gallery).exists()


@pytest.mark.parametrize(
    "command",
    [
        ["rules", "list"],
        ["authorisation", "list"],
        ["roles", "list"],
        ["review", "list-reviewers"],
        ["audit", "verify"],
        ["audit", "show"],
    ],
)
def test_a_command_that_signs_nothing_offers_no_signing_flag(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(*command, "--gallery", str(tmp_path), "--audit-key-file", "k.pem")
    assert result.status == 2
    assert "unrecognized arguments: --audit-key-file" in result.stderr


def test_the_services_build_the_audit_settings_from_their_flags() -> None:
    """The matcher signs its purge's records and the review app its decisions: both take the
    signing flags (not --audit-public-key, which only a verifier uses)."""
    args = matcher.parser().parse_args(["--audit-checkpoint-every", "7", "--audit-key-file", "/k.pem"])
    built = parse_settings(args, (*matcher.SERVICE.settings,))[AuditSettings]
    assert (built.audit_checkpoint_every, built.audit_key_file) == (7, Path("/k.pem"))
    args = review.parser().parse_args(["--audit-checkpoint-every", "9"])
    assert parse_settings(args, review.SETTINGS)[AuditSettings].audit_checkpoint_every == 9
    with pytest.raises(SystemExit):
        matcher.parser().parse_args(["--audit-public-key", "/p.pem"])
