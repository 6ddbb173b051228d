"""The audit log is signed as the command was configured: flags > env > the --config file's `audit:`
section > defaults, like every other setting (issue 14), and a command that writes no record offers
no signing flag. The file's key signs (no development key), env and flags win over the file, the
verifier trusts the public key the file names, and a bad key in the file is named, never shown.

The cadence is what is cheap to see: with `audit_checkpoint_every` N, the log's first checkpoint is
its record seq N-1 (after N-1 records), so 3, 4 and 5 each leave their own mark on six records.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from facestream.services import matcher, review

from facestream.accountability.audit import LOG_FILE, AuditLog
from facestream.accountability.audit_chain import CHECKPOINT
from facestream.accountability.audit_keys import KEY_WHERE, AuditSettings, dev_key_path, key_id
from facestream.config_file import CONFIG_ENV
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


# -- the --config file's audit: section -----------------------------------------------------------


def config(tmp_path: Path, audit: str, name: str = "facestream.yaml") -> Path:
    """A settings file (mode 600: it may hold a key) with this `audit:` section."""
    path = tmp_path / name
    path.write_text("audit:\n" + audit)
    path.chmod(0o600)
    return path


def key_file(tmp_path: Path, key: AuditKey, name: str = "audit-key.pem") -> Path:
    path = tmp_path / name
    path.write_text(key.private_pem)
    path.chmod(0o600)
    return path


def test_the_files_cadence_reaches_the_log_and_env_and_flag_win_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, "  audit_checkpoint_every: 3\n")
    from_file = tmp_path / "file"
    add_rules(from_file, "--config", str(path))
    assert checkpoints(from_file) == cadence(3)
    named_by_env = tmp_path / "named-by-env"
    monkeypatch.setenv(CONFIG_ENV, str(path))
    add_rules(named_by_env)
    assert checkpoints(named_by_env) == cadence(3)
    monkeypatch.setenv("FACESTREAM_AUDIT_CHECKPOINT_EVERY", "4")
    env_wins = tmp_path / "env"
    add_rules(env_wins, "--config", str(path))
    assert checkpoints(env_wins) == cadence(4)
    flag_wins = tmp_path / "flag"
    add_rules(flag_wins, "--config", str(path), "--audit-checkpoint-every", "5")
    assert checkpoints(flag_wins) == cadence(5) == [4]


@pytest.mark.parametrize("given", ["audit_key_file", "audit_key"])
def test_a_key_in_the_file_signs_the_log(tmp_path: Path, given: str) -> None:
    key = make_key(tmp_path)
    value = key_file(tmp_path, key) if given == "audit_key_file" else key.seed_b64
    path = config(tmp_path, f"  {given}: {value}\n  audit_checkpoint_every: 3\n")
    gallery = tmp_path / "gallery"
    add_rules(gallery, "--config", str(path))
    verdict = verify(gallery, key)
    assert verdict["ok"] is True and verdict["checkpoints"] == len(cadence(3))
    assert verdict["key_ids"] == [key_id(key.private.public_key())]
    assert not dev_key_path(gallery).exists()


def test_env_gives_the_key_when_the_file_names_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_file, in_env = make_key(tmp_path, "file"), make_key(tmp_path, "env")
    path = config(tmp_path, f"  audit_key_file: {key_file(tmp_path, in_file)}\n")
    monkeypatch.setenv("FACESTREAM_AUDIT_KEY_FILE", str(key_file(tmp_path, in_env, "env-key.pem")))
    gallery = tmp_path / "gallery"
    add_rules(gallery, "--config", str(path), times=1)
    assert verify(gallery, in_env)["key_ids"] == [key_id(in_env.private.public_key())]


def test_the_verifier_trusts_the_public_key_the_file_names(tmp_path: Path) -> None:
    key, other = make_key(tmp_path), make_key(tmp_path, "other")
    signed = config(tmp_path, f"  audit_key_file: {key_file(tmp_path, key)}\n")
    gallery = tmp_path / "gallery"
    add_rules(gallery, "--config", str(signed), times=2)
    trusting = config(tmp_path, f"  audit_public_key: {key.public_file}\n", "trusting.yaml")
    result = run_cli("audit", "verify", "--gallery", str(gallery), "--config", str(trusting))
    assert result.status == 0, result.stderr
    [verdict] = result.json()
    assert (verdict["ok"], verdict["keys_from"]) == (True, "given")  # not audit.pub beside the log
    wrong = config(tmp_path, f"  audit_public_key: {other.public_file}\n", "wrong.yaml")
    result = run_cli("audit", "verify", "--gallery", str(gallery), "--config", str(wrong))
    assert result.status == 1 and "unknown key" in result.stderr


def test_an_unusable_key_in_the_file_is_named_never_shown(tmp_path: Path) -> None:
    path = config(tmp_path, "  audit_key: hunter2-not-a-key\n")
    result = run_cli("rules", "add", "--gallery", str(tmp_path / "g"), "--until", "2099-01-01T00:00:00Z",
                     "--reason", "x", "--config", str(path))  # fmt: skip
    assert result.status == 2
    assert result.error.startswith(f"facestream: error: {KEY_WHERE}: not a PEM Ed25519 key")
    assert "hunter2" not in result.stderr + result.stdout


def test_the_services_read_the_audit_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = config(tmp_path, "  audit_key_file: /run/secrets/audit-key\n  audit_checkpoint_every: 7\n")
    for service, models in ((matcher, matcher.SERVICE.settings), (review, review.SETTINGS)):
        built = parse_settings(service.parser().parse_args(["--config", str(path)]), models)[AuditSettings]
        assert (built.audit_key_file, built.audit_checkpoint_every) == (Path("/run/secrets/audit-key"), 7)
    monkeypatch.setenv("FACESTREAM_AUDIT_CHECKPOINT_EVERY", "8")
    args = matcher.parser().parse_args(["--config", str(path)])
    assert parse_settings(args, matcher.SERVICE.settings)[AuditSettings].audit_checkpoint_every == 8


def test_the_dpia_describes_and_signs_with_the_files_audit_settings(tmp_path: Path) -> None:
    key = make_key(tmp_path)
    path = config(tmp_path, f"  audit_key_file: {key_file(tmp_path, key)}\n  audit_checkpoint_every: 7\n")
    gallery = tmp_path / "gallery"
    add_rules(gallery, "--config", str(path), times=1)
    trusted = ("--public-key", str(key.public_file))
    result = run_cli("report", "dpia", "--gallery", str(gallery), "--config", str(path), *trusted)
    assert result.status == 0, result.stderr
    assert "every 7 records a checkpoint is signed with a configured Ed25519 key" in result.stdout
    assert verify(gallery, key)["records"] == 2  # the rule and the export, both signed by the file's key


def test_audit_show_finds_the_log_where_its_settings_file_says(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    add_rules(gallery, times=2)
    path = tmp_path / "facestream.yaml"
    path.write_text(f"gallery:\n  gallery: {gallery}\n")
    result = run_cli("audit", "show", "--config", str(path), "--action", "rules.")
    assert result.status == 0, result.stderr
    assert [r["action"] for r in result.json()] == ["rules.change", "rules.change"]  # `rules add`, twice
