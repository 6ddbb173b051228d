"""Authorisations: the grant/revoke/list contract, validation, audit records, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.clock import now_ms, parse_instant
from facestream.errors import ConfigError, NotAuthorised
from tests.fixtures.accountability import audit_records, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


def grant_args(gallery: Path, *extra: str) -> list[str]:
    return [
        "authorisation", "grant", "--gallery", str(gallery), "--case", "CASE-2027/17",
        "--basis", "Art. 5(2) AI Act; court order 4 Gs 17/27", "--purpose", "missing",
        "--issued-by", "District Court Mitte", "--valid-until", "2099-03-01T12:00:00+01:00", *extra,
    ]  # fmt: skip


def test_grant_prints_the_authorisation_and_audits_it(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    before = now_ms()
    result = run_cli(*grant_args(gallery, "--cameras", "cam-1,cam-2", "--zones", "station"))
    assert result.status == 0, result.stderr
    (printed,) = result.json()
    assert printed["id"].startswith("auth_")
    assert printed["case_ref"] == "CASE-2027/17"
    assert printed["purpose"] == "missing"
    assert printed["issued_by"] == "District Court Mitte"
    assert printed["cameras"] == ["cam-1", "cam-2"]
    assert printed["zones"] == ["station"]
    assert printed["status"] == "active"
    assert printed["valid_until_ms"] == parse_instant("2099-03-01T11:00:00Z", "t")
    assert before <= printed["valid_from_ms"] <= now_ms()

    stored = AuthorisationStore(gallery).get(printed["id"])
    assert stored.legal_basis.startswith("Art. 5(2)")
    (record,) = audit_records(gallery)
    assert (record.action, record.authorisation_id) == ("authorisation.grant", printed["id"])
    assert record.objects["case_ref"] == "CASE-2027/17"
    assert record.objects["valid_until_ms"] == printed["valid_until_ms"]
    assert record.objects["cameras"] == ["cam-1", "cam-2"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--purpose", "curiosity"], "invalid choice"),
        (["--valid-until", "2001-01-01"], "is not in the future"),
        (["--valid-until", "next tuesday"], "not an ISO 8601"),
        (["--valid-from", "2099-06-01"], "valid-until must be after valid-from"),
        (["--cameras", "cam 1"], "not a camera/zone id"),
        (["--case", ""], "case_ref"),
    ],
)
def test_bad_grants_are_refused_in_one_line_and_store_nothing(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    gallery = tmp_path / "gallery"
    args = grant_args(gallery)
    for i in range(0, len(extra), 2):  # override a flag already given
        if extra[i] in args:
            args[args.index(extra[i]) + 1] = extra[i + 1]
        else:
            args += extra[i : i + 2]
    result = run_cli(*args)
    assert result.status == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert AuthorisationStore(gallery).all() == {}
    assert not (gallery / "audit.log").exists() or audit_records(gallery) == []


def test_revoke_ends_it_once_and_is_audited(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    auth = grant_authorisation(gallery)
    result = run_cli("authorisation", "revoke", "--gallery", str(gallery), auth, "--actor", "judge")
    assert result.status == 0, result.stderr
    (printed,) = result.json()
    assert (printed["id"], printed["status"], printed["revoked_by"]) == (auth, "revoked", "judge")
    assert printed["purged"] is True  # no gallery was ever written: nothing left to erase
    stored = AuthorisationStore(gallery).get(auth)
    assert stored.status == "revoked" and stored.ended_at_ms == stored.revoked_at_ms
    with pytest.raises(NotAuthorised, match="is revoked"):
        AuthorisationStore(gallery).usable(auth)

    again = run_cli("authorisation", "revoke", "--gallery", str(gallery), auth)
    assert again.status == 2
    assert "already revoked" in again.error
    unknown = run_cli("authorisation", "revoke", "--gallery", str(gallery), "auth_0000000000000000")
    assert unknown.status == 2
    assert [r.action for r in audit_records(gallery)] == ["authorisation.grant", "authorisation.revoke"]


def test_list_shows_all_or_only_those_in_force(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    kept = grant_authorisation(gallery, case="A")
    ended = grant_authorisation(gallery, case="B")
    future = grant_authorisation(gallery, case="C", valid_from="2098-01-01")
    assert run_cli("authorisation", "revoke", "--gallery", str(gallery), ended).status == 0
    everything = run_cli("authorisation", "list", "--gallery", str(gallery)).json()
    assert [a["id"] for a in everything] == [kept, ended, future]
    active = run_cli("authorisation", "list", "--gallery", str(gallery), "--active").json()
    assert [a["id"] for a in active] == [kept]


def test_not_yet_valid_and_expired_cannot_be_used(tmp_path: Path) -> None:
    store = AuthorisationStore(tmp_path)
    auth = store.grant(
        case_ref="C", legal_basis="b", purpose="threat", issued_by="court", granted_by="ana",
        valid_from_ms=2_000_000, valid_until_ms=3_000_000, at_ms=1_000_000,
    )  # fmt: skip
    with pytest.raises(NotAuthorised, match="not valid before"):
        store.usable(auth.id, at_ms=1_500_000)
    assert store.usable(auth.id, at_ms=2_500_000).id == auth.id
    with pytest.raises(NotAuthorised, match="expired"):
        store.usable(auth.id, at_ms=3_000_000)
    assert [a.id for a in store.mark_expired(3_000_000)] == [auth.id]
    assert store.mark_expired(3_000_001) == []  # recorded once
    assert store.get(auth.id).status == "expired"


def test_a_damaged_store_is_an_error(tmp_path: Path) -> None:
    grant_authorisation(tmp_path)
    (tmp_path / "authorisations.json").write_text('{"authorisations": [{"id": "auth_x"}]}')
    with pytest.raises(ConfigError, match="damaged"):
        AuthorisationStore(tmp_path).all()


def _grant_many(directory: str, n: int) -> None:
    store = AuthorisationStore(Path(directory))
    for i in range(n):
        store.grant(
            case_ref=f"C{i}", legal_basis="b", purpose="wanted", issued_by="court", granted_by="ana",
            valid_until_ms=now_ms() + 3_600_000,
        )  # fmt: skip


def test_concurrent_writers_lose_no_grant(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_grant_many, args=(str(tmp_path), 15)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert len(AuthorisationStore(tmp_path).all()) == 45
