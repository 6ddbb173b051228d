"""Reviewer accounts and sessions: scrypt hashes, the 0600 file, expiring sessions, CSRF."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from facestream.errors import ConfigError
from facestream.review.accounts import ReviewerAccounts, check_password, hash_password
from facestream.review.sessions import Sessions, csrf_ok

PASSWORD = "correct horse battery"


def test_passwords_are_salted_scrypt_hashes_that_only_the_right_password_matches() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$") and PASSWORD not in first
    assert check_password(PASSWORD, first) and check_password(PASSWORD, second)
    assert not check_password(PASSWORD + "!", first)
    assert not check_password(PASSWORD, "md5$whatever") and not check_password(PASSWORD, "garbage")


def test_the_account_file_is_private_holds_no_password_and_refuses_short_ones(tmp_path: Path) -> None:
    accounts = ReviewerAccounts(tmp_path)
    accounts.add("rita", PASSWORD, by="olga")
    assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600
    assert PASSWORD.encode() not in accounts.path.read_bytes()
    assert accounts.all()["rita"].created_by == "olga"
    with pytest.raises(ConfigError, match="12"):
        accounts.add("rob", "short", by="olga")
    with pytest.raises(ConfigError, match="exists"):
        accounts.add("rita", PASSWORD, by="olga")
    with pytest.raises(ConfigError):
        accounts.add("../etc", PASSWORD, by="olga")
    accounts.remove("rita")
    assert accounts.all() == {}


def test_sign_in_checks_the_password_of_a_known_name_and_never_locks_the_account(tmp_path: Path) -> None:
    """The lock-out that anyone could trigger is gone: limits live in the web app, per client
    (limits.py, tests/review/test_signin_limits.py)."""
    accounts = ReviewerAccounts(tmp_path)
    accounts.add("rita", PASSWORD, by="olga")
    assert accounts.verify("rita", PASSWORD) is True
    assert accounts.verify("nobody", PASSWORD) is False
    assert accounts.verify("rita", PASSWORD.upper()) is False
    for _ in range(6):
        assert accounts.verify("rita", "wrong password!") is False
    assert accounts.verify("rita", PASSWORD) is True


def test_sessions_expire_when_idle_and_at_their_maximum_age_and_tokens_are_not_stored() -> None:
    now = [0.0]
    sessions = Sessions(idle_s=10, max_s=25, clock=lambda: now[0])
    token, session = sessions.start("rita")
    assert token not in repr(sessions.__dict__) and sessions.get(token) == session
    now[0] = 9
    assert sessions.get(token) is not None
    now[0] = 18  # 9 s after last use: still alive
    assert sessions.get(token) is not None
    now[0] = 24
    assert sessions.get(token) is not None
    now[0] = 26  # over the maximum age although used recently
    assert sessions.get(token) is None
    token2, _ = sessions.start("rob")
    now[0] = 37
    assert sessions.get(token2) is None
    assert sessions.get("forged") is None and sessions.get(None) is None


def test_csrf_tokens_are_per_session_and_compared_exactly() -> None:
    sessions = Sessions(idle_s=60, max_s=600)
    _, a = sessions.start("rita")
    _, b = sessions.start("rita")
    assert a.csrf != b.csrf
    assert csrf_ok(a, a.csrf) and not csrf_ok(a, b.csrf) and not csrf_ok(a, "") and not csrf_ok(a, None)
