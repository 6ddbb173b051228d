"""Suspension rules through the CLI: add/remove/list, audited, role-checked, and enforced by identify."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestream.accountability.rules import RuleStore
from tests.fixtures.accountability import audit_records, enroll, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


def add_rule(gallery: Path, *extra: str) -> dict[str, object]:
    result = run_cli("rules", "add", "--gallery", str(gallery), "--reason", "demonstration, Main Sq.", *extra)
    assert result.status == 0, result.stderr
    (rule,) = result.json()
    return rule


def identify(gallery: Path, *sources: Path, zone: str = "default") -> list[str]:
    result = run_cli("identify", "--gallery", str(gallery), "--zone", zone, *(str(s) for s in sources))
    assert result.status == 0, result.stderr
    return sorted(c["identity"] for c in result.json())


def test_rules_switch_identify_off_by_zone_and_are_audited(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    probe = faces_dir / "probe" / "obama.jpg"
    assert identify(gallery, probe, zone="old-town") == ["obama"]

    rule = add_rule(gallery, "--zones", "old-town", "--from", "2000-01-01", "--until", "2099-01-01")
    assert rule["zones"] == ["old-town"]
    assert identify(gallery, probe, zone="old-town") == []
    assert identify(gallery, probe, zone="harbour") == ["obama"]
    (suspended_run, other_run) = [r for r in audit_records(gallery) if r.action == "identify.run"][-2:]
    assert (suspended_run.objects["suspended_faces"], suspended_run.objects["candidates"]) == (1, 0)
    assert (other_run.objects["suspended_faces"], other_run.objects["candidates"]) == (0, 1)

    listed = run_cli("rules", "list", "--gallery", str(gallery), "--current").json()
    assert [r["id"] for r in listed] == [rule["id"]]
    removed = run_cli("rules", "remove", "--gallery", str(gallery), str(rule["id"]))
    assert removed.status == 0, removed.stderr
    assert identify(gallery, probe, zone="old-town") == ["obama"]

    changes = [r for r in audit_records(gallery) if r.action == "rules.change"]
    assert [(c.objects["op"], c.objects["rule_id"], c.objects["zones"]) for c in changes] == [
        ("add", rule["id"], ["old-town"]),
        ("remove", rule["id"], ["old-town"]),
    ]


def test_identify_names_its_zone_on_each_candidate_and_in_the_audit(tmp_path: Path, faces_dir: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    assert enroll(gallery, "obama", auth, faces_dir / "enroll" / "obama_1.jpg").status == 0
    result = run_cli(
        "identify", "--gallery", str(gallery), "--zone", "harbour", str(faces_dir / "probe" / "obama.jpg")
    )
    assert result.status == 0, result.stderr
    (candidate,) = result.json()
    assert (candidate["identity"], candidate["zone"]) == ("obama", "harbour")
    (opened,) = [r for r in audit_records(gallery) if r.action == "candidate.open"]
    assert (opened.objects["candidate_id"], opened.objects["zone"]) == (candidate["candidate_id"], "harbour")


def test_a_rule_in_the_past_does_not_suspend_today(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    rule = add_rule(gallery, "--cameras", "cam-1", "--from", "2001-01-01", "--until", "2001-01-02")
    assert run_cli("rules", "list", "--gallery", str(gallery), "--current").json() == []
    assert [r["id"] for r in run_cli("rules", "list", "--gallery", str(gallery)).json()] == [rule["id"]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--until", "2001-01-01", "--from", "2002-01-01"], "--until must be after --from"),
        (["--until", "soon"], "not an ISO 8601"),
        (["--until", "2099-01-01", "--zones", "a zone"], "not a camera/zone id"),
    ],
)
def test_bad_rules_are_refused(tmp_path: Path, extra: list[str], message: str) -> None:
    gallery = tmp_path / "gallery"
    result = run_cli("rules", "add", "--gallery", str(gallery), "--reason", "r", *extra)
    assert result.status == 2
    assert message in result.error
    assert RuleStore(gallery).all() == []


def test_operators_may_suspend_but_only_authorisers_may_lift(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    for member, role, by in (
        ("ops", "operator", "setup"),
        ("ana", "authoriser", "ops"),
        ("olga", "officer", "ops"),
    ):
        assert (
            run_cli("roles", "grant", "--gallery", str(gallery), "--role", role, member, "--actor", by).status
            == 0
        )
    denied = run_cli(
        "rules", "add", "--gallery", str(gallery), "--reason", "r", "--until", "2099-01-01", "--actor", "olga"
    )
    assert denied.status == 1
    assert "operator or authoriser" in denied.error
    rule = add_rule(gallery, "--until", "2099-01-01", "--actor", "ops")
    lift = run_cli("rules", "remove", "--gallery", str(gallery), str(rule["id"]), "--actor", "ops")
    assert lift.status == 1
    assert "does not hold the role authoriser" in lift.error
    assert len(RuleStore(gallery).all()) == 1
    assert (
        run_cli("rules", "remove", "--gallery", str(gallery), str(rule["id"]), "--actor", "ana").status == 0
    )
    assert RuleStore(gallery).all() == []
    (added, removed) = [r for r in audit_records(gallery) if r.action == "rules.change"]
    assert (added.actor, added.role, removed.actor, removed.role) == ("ops", "operator", "ana", "authoriser")
