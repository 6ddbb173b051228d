"""Roles: single-operator bootstrap, then enforced separation; every change audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestream.accountability.roles import RoleStore, actor_name, resolve_actor, resolve_actor_any
from facestream.errors import ConfigError, PermissionDenied
from tests.fixtures.accountability import audit_records, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


def assign(gallery: Path, *pairs: tuple[str, str], by: str = "root-op") -> None:
    """Assign roles through the CLI, each change made by `by` (an operator)."""
    for member, role in pairs:
        result = run_cli("roles", "grant", "--gallery", str(gallery), "--role", role, member, "--actor", by)
        assert result.status == 0, result.stderr


def separated(gallery: Path) -> None:
    """ops (operator), ana (authoriser), olga (officer), rita + rob (reviewers), aud (auditor)."""
    assign(gallery, ("ops", "operator"), by="installer")
    assign(gallery, ("ana", "authoriser"), ("olga", "officer"), ("rita", "reviewer"), by="ops")
    assign(gallery, ("rob", "reviewer"), ("aud", "auditor"), by="ops")


def test_single_operator_mode_holds_every_role_and_says_so(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    for role in ("authoriser", "officer", "reviewer", "auditor", "operator"):
        actor = resolve_actor(gallery, role, "alice")  # type: ignore[arg-type]
        assert actor.name == "alice"
        assert actor.role == f"{role}:single-operator"
    # ...and the audit records of a single-operator gallery carry it.
    auth = grant_authorisation(gallery)
    (grant,) = audit_records(gallery)
    assert grant.action == "authorisation.grant"
    assert grant.authorisation_id == auth
    assert grant.role == "authoriser:single-operator"


def test_actor_name_from_flag_then_env_then_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "login-name")
    assert actor_name(None) == "login-name"
    monkeypatch.setenv("FACESTREAM_ACTOR", "env-name")
    assert actor_name(None) == "env-name"
    assert actor_name("flag-name") == "flag-name"
    with pytest.raises(ConfigError, match="account name"):
        actor_name("robert'); drop")


def test_first_assignment_must_be_an_operator(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    refused = run_cli("roles", "grant", "--gallery", str(gallery), "--role", "officer", "olga")
    assert refused.status == 2
    assert "first role assigned must be an operator" in refused.error
    assert RoleStore(gallery).single_operator()
    assign(gallery, ("ops", "operator"), by="installer")
    assert not RoleStore(gallery).single_operator()


def test_separation_is_enforced_once_roles_exist(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    separated(gallery)
    assert resolve_actor(gallery, "authoriser", "ana").role == "authoriser"
    assert resolve_actor_any(gallery, ("officer", "auditor"), "aud").role == "auditor"
    with pytest.raises(PermissionDenied, match="olga does not hold the role authoriser"):
        resolve_actor(gallery, "authoriser", "olga")
    with pytest.raises(PermissionDenied):
        resolve_actor(gallery, "officer", "stranger")

    # Through the CLI: an officer cannot grant, an authoriser cannot enroll (exit 1, one line).
    denied = run_cli(
        "authorisation", "grant", "--gallery", str(gallery), "--case", "C", "--basis", "b",
        "--purpose", "wanted", "--issued-by", "court", "--valid-until", "2099-01-01", "--actor", "olga",
    )  # fmt: skip
    assert denied.status == 1
    assert "olga does not hold the role authoriser" in denied.error
    auth = grant_authorisation(gallery, actor="ana")
    photo = Path(__file__)  # never read: the role check comes first
    denied = run_cli(
        "gallery", "enroll", "--gallery", str(gallery), "--identity", "x", "--authorisation", auth,
        str(photo), "--actor", "ana",
    )  # fmt: skip
    assert denied.status == 1
    assert "ana does not hold the role officer" in denied.error
    assert not (gallery / "milvus.db").exists()


def test_authoriser_and_officer_are_kept_apart(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    separated(gallery)
    result = run_cli(
        "roles", "grant", "--gallery", str(gallery), "--role", "officer", "ana", "--actor", "ops"
    )
    assert result.status == 1
    assert "kept apart" in result.error
    assert RoleStore(gallery).assignments()["ana"] == {"authoriser"}


def test_only_operators_change_roles_and_never_their_own(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    separated(gallery)
    by_officer = run_cli(
        "roles", "grant", "--gallery", str(gallery), "--role", "reviewer", "olga", "--actor", "olga"
    )
    assert by_officer.status == 1
    assert "does not hold the role operator" in by_officer.error
    own = run_cli("roles", "grant", "--gallery", str(gallery), "--role", "auditor", "ops", "--actor", "ops")
    assert own.status == 1
    assert "cannot change their own roles" in own.error
    assign(gallery, ("ops2", "operator"), by="ops")
    store = RoleStore(gallery)
    store.revoke("ops2", "ops", "operator")  # fine: ops2 remains an operator
    with pytest.raises(PermissionDenied, match="last operator"):
        store.revoke("ana", "ops2", "operator")
    assert store.assignments()["ops2"] == {"operator"}


def test_role_changes_are_audited_and_listed(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    separated(gallery)
    revoked = run_cli(
        "roles", "revoke", "--gallery", str(gallery), "--role", "reviewer", "rob", "--actor", "ops"
    )
    assert revoked.status == 0, revoked.stderr
    changes = [r for r in audit_records(gallery) if r.action == "roles.change"]
    assert [(r.objects["op"], r.objects["member"], r.objects["role"]) for r in changes] == [
        ("grant", "ops", "operator"),
        ("grant", "ana", "authoriser"),
        ("grant", "olga", "officer"),
        ("grant", "rita", "reviewer"),
        ("grant", "rob", "reviewer"),
        ("grant", "aud", "auditor"),
        ("revoke", "rob", "reviewer"),
    ]
    assert changes[0].role == "operator:single-operator"  # the bootstrap grant
    assert {r.actor for r in changes[1:]} == {"ops"}
    assert all(r.role == "operator" for r in changes[1:])
    (listing,) = run_cli("roles", "list", "--gallery", str(gallery), "--actor", "aud").json()
    assert run_cli("roles", "list", "--gallery", str(gallery), "--actor", "stranger").status == 1
    assert listing["single_operator"] is False
    assert listing["assignments"]["rita"] == ["reviewer"]
    assert "rob" not in listing["assignments"]


def test_a_damaged_roles_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    separated(gallery)
    (gallery / "roles.json").write_text('{"assignments": {"olga": ["officer"]')  # truncated
    with pytest.raises(ConfigError, match="damaged"):
        resolve_actor(gallery, "officer", "olga")
