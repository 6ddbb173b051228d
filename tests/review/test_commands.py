"""`facestream review add-reviewer | set-password | remove-reviewer | list-reviewers`, and the
service's refusals of a bad configuration (one line, exit 2)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from facestream.review.accounts import ReviewerAccounts
from tests.fixtures.accountability import CliResult, actions, audit_records, run_cli
from tests.integration.processes import FACESTREAM


def with_stdin(text: str, *args: str) -> CliResult:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        return run_cli(*args)
    finally:
        sys.stdin = saved


def add(state: Path, name: str, password: str, actor: str = "olga") -> CliResult:
    return with_stdin(
        password + "\n",
        "review",
        "add-reviewer",
        name,
        "--password-stdin",
        "--gallery",
        str(state),
        "--actor",
        actor,
    )


@pytest.mark.usefixtures("accountability_env")
def test_operators_manage_accounts_audited_without_the_password(tmp_path: Path) -> None:
    state = tmp_path / "state"
    single = add(state, "rita", "a long enough password", actor="root")
    assert single.status == 0, single.stderr
    assert single.json() == [{"account": "rita", "op": "add", "reviewer_role": True, "single_operator": True}]
    for role, member, by in (
        ("operator", "olga", "root"),
        ("reviewer", "rita", "olga"),
        ("auditor", "audrey", "olga"),
    ):
        assert (
            run_cli("roles", "grant", "--gallery", str(state), "--role", role, member, "--actor", by).status
            == 0
        )

    refused = add(state, "rob", "a long enough password", actor="rita")  # a reviewer is no operator
    assert refused.status == 1 and "operator" in refused.error
    short = add(state, "rob", "short")
    assert short.status == 2 and "12" in short.error
    again = add(state, "rita", "another long password")
    assert again.status == 2 and "exists" in again.error
    no_tty = with_stdin("", "review", "add-reviewer", "rob", "--gallery", str(state), "--actor", "olga")
    assert no_tty.status == 2 and "--password-stdin" in no_tty.error
    rob = add(state, "rob", "rob's long password")
    assert rob.status == 0 and rob.json()[0]["reviewer_role"] is False  # an account, not yet the role

    listed = run_cli("review", "list-reviewers", "--gallery", str(state), "--actor", "audrey")
    assert listed.status == 0
    assert [(a["account"], a["roles"]) for a in listed.json()] == [("rita", ["reviewer"]), ("rob", [])]
    changed = with_stdin(
        "a brand new password\n", "review", "set-password", "rita", "--password-stdin",
        "--gallery", str(state), "--actor", "olga",
    )  # fmt: skip
    assert changed.status == 0
    accounts = ReviewerAccounts(state)
    assert accounts.verify("rita", "a brand new password") and not accounts.verify(
        "rita", "a long enough password"
    )
    assert run_cli("review", "remove-reviewer", "rob", "--gallery", str(state), "--actor", "olga").status == 0
    assert set(accounts.all()) == {"rita"}

    changes = [r for r in audit_records(state) if r.action == "config.change"]
    assert [(r.actor, r.objects["op"], r.objects["account"]) for r in changes] == [
        ("root", "add", "rita"),
        ("olga", "add", "rob"),
        ("olga", "set-password", "rita"),
        ("olga", "remove", "rob"),
    ]
    log = (state / "audit.log").read_bytes()
    for password in (b"a long enough password", b"rob's long password", b"a brand new password"):
        assert password not in log
    assert "config.change" in actions(state)


@pytest.mark.subprocess
def test_the_service_refuses_a_missing_state_directory_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(FACESTREAM), "review", "--gallery", str(tmp_path / "nowhere"),
         "--bootstrap-servers", "127.0.0.1:1", "--metrics-port", "0", "--review-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "does not exist" in errors[0], done.stderr
    assert done.stdout == ""
