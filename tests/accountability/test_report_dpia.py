"""The DPIA is filled from the deployment's real configuration and leaves judgement to people."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from facestream.accountability.audit import Actor, open_audit_log
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.accountability.dpia import HUMAN_MARKER, PLACEHOLDER, fill, template_text
from facestream.accountability.roles import RoleStore
from facestream.accountability.rules import RuleStore
from facestream.cli import main
from facestream.errors import ConfigError
from facestream.transport.topics import AUDIT, CATALOGUE, FRAMES
from tests.fixtures.audit import AuditKey

REPO = Path(__file__).resolve().parents[2]
DAY = 86_400_000

pytestmark = pytest.mark.usefixtures("audit_env")


def dpia(
    gallery: Path, key: AuditKey, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    try:
        code = main(
            ["report", "dpia", "--gallery", str(gallery), "--public-key", str(key.public_file), *extra]
        )
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_packaged_template_is_the_one_in_docs() -> None:
    assert template_text() == (REPO / "docs" / "dpia-template.md").read_text(encoding="utf-8")


def test_template_and_filler_must_agree() -> None:
    with pytest.raises(ConfigError, match="missing"):
        fill("{{ a }} {{ b }}", {"a": "x"})
    with pytest.raises(ConfigError, match="unused"):
        fill("{{ a }}", {"a": "x", "c": "y"})
    assert fill("{{ a }}-{{b}}", {"a": "1", "b": "2"}) == "1-2"


def test_a_fresh_gallery_is_described_and_flagged_as_single_operator(
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACESTREAM_MATCHER_MATCH_THRESHOLD", "0.47")
    code, text, _ = dpia(audit_gallery, audit_key, capsys)
    assert code == 0
    assert not PLACEHOLDER.search(text)
    assert text.count(HUMAN_MARKER) == template_text().count(HUMAN_MARKER) + 1  # + the header's note
    assert "Single-operator mode: NO separation of duties" in text
    assert "No authorisation has been granted" in text
    assert "No suspension rule is configured" in text
    # The matcher threshold comes from the environment actually in force.
    assert re.search(r"\| match_threshold \| 0\.47 \|", text)
    # Retention from the topic catalogue, per topic.
    frames = next(t for t in CATALOGUE if t.name == FRAMES)
    assert re.search(
        rf"\| `{FRAMES}` \| {re.escape(frames.holds)} \| 10 minutes \| 2 minutes \| delete \|", text
    )
    assert re.search(rf"\| `{AUDIT}` \| [^|]+ \| 400 days \| 1 day \| delete \|", text)
    # The secret key is configured, and never printed.
    assert audit_key.seed_b64 not in text
    assert "| audit_key | set |" in text
    assert "a configured Ed25519 key" in text


def test_authorisations_roles_and_rules_in_force_are_listed(
    audit_gallery: Path, audit_key: AuditKey, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_ms()
    auth = AuthorisationStore(audit_gallery).grant(
        case_ref="CASE-77",
        legal_basis="Court order 2027/15 under s. 12",
        purpose="missing",
        issued_by="District Court North",
        valid_until_ms=now + 3 * DAY,
        granted_by="judge.anna",
        cameras=["cam-7"],
        zones=["old-town"],
    )
    rule = RuleStore(audit_gallery).add(
        zones=["old-town"],
        cameras=[],
        starts_at_ms=now + DAY,
        ends_at_ms=now + 2 * DAY,
        reason="demonstration on the square",
        created_by="op.emma",
        at_ms=now,
    )
    roles = RoleStore(audit_gallery)
    roles.grant("root", "op.emma", "operator")
    roles.grant("op.emma", "aud.fay", "auditor")
    open_audit_log(audit_gallery, AuditSettings()).append(
        actor=Actor("judge.anna", "authoriser"), action="authorisation.grant"
    )

    code, text, err = dpia(audit_gallery, audit_key, capsys, "--actor", "aud.fay")
    assert code == 0, err
    row = next(line for line in text.splitlines() if auth.id in line)
    for value in ("CASE-77", "missing", "Court order 2027/15 under s. 12", "District Court North", "cam-7",
                  "zone old-town", "active (in force)"):  # fmt: skip
        assert value in row
    rule_row = next(line for line in text.splitlines() if rule.id in line)
    assert "zone old-town" in rule_row and "demonstration on the square" in rule_row
    assert "Roles are separated" in text and "auditor: 1" in text and "operator: 1" in text
    assert "Single-operator" not in text
    assert "1 in force now" in text
    assert "the log verifies" in text


def test_it_is_audited_and_refused_to_other_roles(
    audit_gallery: Path, audit_key: AuditKey, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    roles = RoleStore(audit_gallery)
    roles.grant("root", "op.emma", "operator")
    roles.grant("op.emma", "rev.carla", "reviewer")
    code, _, err = dpia(audit_gallery, audit_key, capsys, "--actor", "rev.carla")
    assert code == 1 and "operator or auditor" in err

    out = tmp_path / "dpia.md"
    code, stdout, _ = dpia(audit_gallery, audit_key, capsys, "--actor", "op.emma", "--output", str(out))
    assert code == 0 and stdout == "" and out.read_text().startswith("# Data protection impact assessment")
    last = list(open_audit_log(audit_gallery, AuditSettings()).records())[-1]
    assert (last.action, last.actor, dict(last.objects)) == ("report.export", "op.emma", {"report": "dpia"})


def test_a_tampered_log_shows_in_the_dpia(
    audit_gallery: Path, audit_key: AuditKey, capsys: pytest.CaptureFixture[str]
) -> None:
    log = open_audit_log(audit_gallery, AuditSettings())
    for n in range(3):
        log.append(actor=Actor("officer.bert", "officer"), action="gallery.enroll", objects={"n": n})
    path = audit_gallery / "audit.log"
    path.write_bytes(path.read_bytes().replace(b'"n":1', b'"n":7'))
    code, text, _ = dpia(audit_gallery, audit_key, capsys)
    assert code == 0 and "**FAILS verification** at line 2 (seq 1)" in text
