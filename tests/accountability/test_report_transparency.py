"""The transparency report equals counts computed independently from the log it came from, and
holds no personal data."""

from __future__ import annotations

import json
import random
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from facestream.accountability.audit import Actor, AuditLog
from facestream.accountability.clock import iso, parse_instant
from facestream.cli import main
from tests.fixtures.audit import AuditKey, AuditLogFactory, StepClock

HOUR = 3_600_000
START = parse_instant("2027-03-01T00:00:00Z", "start")
FROM, TO = "2027-03-02T00:00:00Z", "2027-03-05T00:00:00Z"
FROM_MS, TO_MS = parse_instant(FROM, "from"), parse_instant(TO, "to")
PEOPLE = ["Jane Roe", "John Doe", "Maria Example", "Kwame Sample", "Li Placeholder"]
STAFF = {
    "authoriser": Actor("judge.anna", "authoriser"),
    "officer": Actor("officer.bert", "officer"),
    "reviewer1": Actor("rev.carla", "reviewer"),
    "reviewer2": Actor("rev.dmitri", "reviewer"),
    "operator": Actor("op.emma", "operator"),
}
pytestmark = pytest.mark.usefixtures("audit_env")  # the CLI signs its report.export with the same key

SYSTEM = Actor("review", "system")
COUNTS = ("searches", "candidates", "confirmed", "rejected", "expired", "enrollments")


class Scenario:
    """Writes a random but reproducible history to the log, and tallies, on its own, what the
    report must say for [FROM, TO)."""

    def __init__(self, log: AuditLog, clock: StepClock, seed: int) -> None:
        self.log, self.clock, self.rng = log, clock, random.Random(seed)
        self.expected: dict[str, Counter[str]] = {}
        self.total_searches = 0
        self.auths: dict[str, dict[str, Any]] = {}

    def at(self, at_ms: int) -> None:
        self.clock.set(at_ms)

    def counted(self, auth_id: str, what: str) -> None:
        if FROM_MS <= self.clock.now < TO_MS:
            self.expected.setdefault(auth_id, Counter())[what] += 1

    def grant(self, auth_id: str, case: str, purpose: str, valid_from: int, valid_until: int) -> None:
        self.auths[auth_id] = {"case_ref": case, "purpose": purpose, "from": valid_from, "until": valid_until}
        self.log.append(
            actor=STAFF["authoriser"],
            action="authorisation.grant",
            authorisation_id=auth_id,
            objects={
                "case_ref": case,
                "legal_basis": "Court order under s. 12",
                "purpose": purpose,
                "issued_by": "District Court",
                "valid_from_ms": valid_from,
                "valid_until_ms": valid_until,
                "cameras": ["cam-1", "cam-2"],
                "zones": [],
            },
        )

    def day(self, auth_ids: list[str]) -> None:
        """Enrollments, searches, candidates and their reviews, at random times."""
        for auth_id in auth_ids:
            for _ in range(self.rng.randint(0, 2)):
                self.counted(auth_id, "enrollments")
                self.log.append(
                    actor=STAFF["officer"],
                    action="gallery.enroll",
                    authorisation_id=auth_id,
                    objects={
                        "identity": self.rng.choice(PEOPLE),
                        "entry_ids": [f"e{self.rng.randrange(10**6)}"],
                    },
                )
        for _ in range(self.rng.randint(2, 5)):
            self.clock.now += self.rng.randint(1, 3 * HOUR)
            checked = sorted(a for a in auth_ids if self.rng.random() < 0.8)
            for auth_id in checked:
                self.counted(auth_id, "searches")
            if FROM_MS <= self.clock.now < TO_MS:
                self.total_searches += 1
            for auth_id in checked:
                for _ in range(self.rng.randint(0, 3)):
                    self.candidate(auth_id)
            self.log.append(
                actor=STAFF["operator"],
                action="identify.run",
                objects={"sources": 1, "cameras": ["cam-1"], "authorisations": checked, "faces": 40},
            )

    def candidate(self, auth_id: str) -> None:
        cid = f"c{self.rng.randrange(10**9):09d}"
        person = self.rng.choice(PEOPLE)
        self.counted(auth_id, "candidates")
        self.log.append(
            actor=Actor("matcher", "system"),
            action="candidate.open",
            authorisation_id=auth_id,
            objects={"candidate_id": cid, "identity": person, "camera_id": "cam-1", "score": 0.61},
        )
        self.clock.now += self.rng.randint(1, HOUR // 2)  # reviews may fall after the period ends
        fate = self.rng.choice(["confirm", "reject", "expire", "open", "one-confirm"])
        if fate in ("confirm", "one-confirm"):
            self.log.append(actor=STAFF["reviewer1"], action="review.confirm", authorisation_id=auth_id,
                            objects={"candidate_id": cid})  # fmt: skip
        if fate == "confirm":
            self.log.append(actor=STAFF["reviewer2"], action="review.confirm", authorisation_id=auth_id,
                            objects={"candidate_id": cid})  # fmt: skip
            self.counted(auth_id, "confirmed")
            self.log.append(actor=SYSTEM, action="alert.confirmed", authorisation_id=auth_id,
                            objects={"candidate_id": cid, "reviewers": 2})  # fmt: skip
        elif fate == "reject":
            self.counted(auth_id, "rejected")
            self.log.append(actor=STAFF["reviewer1"], action="review.reject", authorisation_id=auth_id,
                            objects={"candidate_id": cid})  # fmt: skip
        elif fate == "expire":
            self.counted(auth_id, "expired")
            self.log.append(actor=SYSTEM, action="candidate.expire", authorisation_id=auth_id,
                            objects={"candidate_id": cid})  # fmt: skip


def write_history(make_audit_log: AuditLogFactory, seed: int) -> Scenario:
    clock = StepClock(START, 1)
    s = Scenario(make_audit_log(every=16, clock=clock), clock, seed)
    days = [START + d * 24 * HOUR for d in range(7)]  # 1-7 March; the period is 2-4 March
    a, b, c, d = (f"auth_{n:016x}" for n in (0xA, 0xB, 0xC, 0xD))
    s.at(days[0])
    s.grant(a, "CASE-2027-001", "wanted", days[0], days[6])
    s.grant(b, "CASE-2027-002", "missing", days[0], days[3] + 6 * HOUR)
    s.day([a, b])
    s.at(days[1] + HOUR)
    s.grant(c, "CASE-2027-003", "threat", days[1] + HOUR, days[1] + 20 * HOUR)
    s.day([a, b, c])
    s.at(days[2])
    s.log.append(actor=Actor("facestream", "system"), action="authorisation.expire", authorisation_id=c)
    s.day([a, b])
    s.at(days[3] + 7 * HOUR)
    s.log.append(actor=STAFF["authoriser"], action="authorisation.revoke", authorisation_id=b)
    s.day([a])
    s.at(days[5])
    s.grant(d, "CASE-2027-004", "wanted", days[5], days[6])  # after the period: not in the report
    s.day([a, d])
    return s


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def report_args(gallery: Path, key: AuditKey, fmt: str = "json") -> list[str]:
    return ["report", "transparency", "--gallery", str(gallery), "--from", FROM, "--to", TO,
            "--format", fmt, "--public-key", str(key.public_file)]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_equal_an_independent_tally_of_the_log(
    make_audit_log: AuditLogFactory, audit_gallery: Path, audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str], seed: int,
) -> None:  # fmt: skip
    scenario = write_history(make_audit_log, seed)
    code, out, _ = run(report_args(audit_gallery, audit_key), capsys)
    assert code == 0
    report = json.loads(out)

    rows = {row["authorisation_id"]: row for row in report["authorisations"]}
    a, b, c = (f"auth_{n:016x}" for n in (0xA, 0xB, 0xC))
    assert set(rows) == {a, b, c}  # a fourth was granted after the period
    for auth_id, row in rows.items():
        assert {k: row[k] for k in COUNTS} == {
            k: scenario.expected.get(auth_id, Counter())[k] for k in COUNTS
        }
        meta = scenario.auths[auth_id]
        assert (row["case_ref"], row["purpose"]) == (meta["case_ref"], meta["purpose"])
        assert (row["valid_from"], row["valid_until"]) == (iso(meta["from"]), iso(meta["until"]))
    assert (rows[a]["status_at_end"], rows[b]["status_at_end"], rows[c]["status_at_end"]) == (
        "active",
        "revoked",  # on 4 March 07:00, inside the period
        "expired",
    )
    assert report["totals"]["searches"] == scenario.total_searches
    for k in COUNTS[1:]:
        assert report["totals"][k] == sum(e[k] for e in scenario.expected.values())
    assert sum(report["totals"][k] for k in COUNTS) > 10  # the scenario did produce activity

    # The report names the log state it came from: the records before its own export record.
    _, verify_out, _ = run(["audit", "verify", "--gallery", str(audit_gallery),
                            "--public-key", str(audit_key.public_file)], capsys)  # fmt: skip
    verified = json.loads(verify_out)
    assert report["audit_log"]["last_seq"] < verified["last_seq"]
    lines = (audit_gallery / "audit.log").read_bytes().splitlines()
    at_report = json.loads(lines[report["audit_log"]["last_seq"]])
    assert at_report["hash"] == report["audit_log"]["last_hash"]
    exported = [json.loads(line) for line in lines[report["audit_log"]["last_seq"] + 1 :]]
    assert [r["action"] for r in exported if r["action"] != "audit.checkpoint"] == ["report.export"]


def test_status_is_as_of_the_end_of_the_period(
    make_audit_log: AuditLogFactory,
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_history(make_audit_log, 7)
    args = report_args(audit_gallery, audit_key)
    args[args.index("--to") + 1] = "2027-03-04T06:00:00Z"  # before the revocation at 07:00
    code, out, _ = run(args, capsys)
    rows = {r["authorisation_id"]: r for r in json.loads(out)["authorisations"]}
    assert code == 0 and rows[f"auth_{0xB:016x}"]["status_at_end"] == "active"
    assert rows[f"auth_{0xC:016x}"]["status_at_end"] == "expired"


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def test_the_html_page_shows_the_same_numbers_and_no_personal_data(
    make_audit_log: AuditLogFactory,
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_history(make_audit_log, 11)
    _, out_json, _ = run(report_args(audit_gallery, audit_key), capsys)
    code, page, _ = run(report_args(audit_gallery, audit_key, "html"), capsys)
    assert code == 0 and page.startswith("<!doctype html>")
    report = json.loads(out_json)

    parser = Cells()
    parser.feed(page)
    by_id = {row[0]: row for row in parser.rows if row and row[0].startswith("auth_")}
    header = next(row for row in parser.rows if row and row[0] == "authorisation")
    for json_row in report["authorisations"]:
        html_row = dict(zip(header, by_id[json_row["authorisation_id"]], strict=True))
        assert {k: int(html_row[k]) for k in COUNTS} == {k: json_row[k] for k in COUNTS}
        assert html_row["case"] == json_row["case_ref"]

    for text in (out_json, page):
        for secret in [*PEOPLE, *(a.name for a in STAFF.values()), "Court order", "District Court"]:
            assert secret not in text


def test_a_tampered_log_gives_no_report(
    make_audit_log: AuditLogFactory,
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_history(make_audit_log, 5)
    path = audit_gallery / "audit.log"
    lines = path.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if b"review.reject" in line)
    del lines[index]  # hide a rejection
    path.write_bytes(b"".join(lines))
    code, out, err = run(report_args(audit_gallery, audit_key), capsys)
    assert code == 1 and out == ""
    assert f"line {index + 1}" in err


def test_bad_periods_are_usage_errors(
    make_audit_log: AuditLogFactory,
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_history(make_audit_log, 5)
    args = report_args(audit_gallery, audit_key)
    args[args.index("--to") + 1] = "2027-03-01"
    code, _, err = run(args, capsys)
    assert code == 2 and "--to must be after --from" in err
    args[args.index("--to") + 1] = "next tuesday"
    code, _, err = run(args, capsys)
    assert code == 2 and "ISO 8601" in err


def test_only_an_auditor_may_produce_it(
    make_audit_log: AuditLogFactory,
    audit_gallery: Path,
    audit_key: AuditKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from facestream.accountability.roles import RoleStore

    write_history(make_audit_log, 5)
    roles = RoleStore(audit_gallery)
    roles.grant("root", "op.emma", "operator")
    roles.grant("op.emma", "aud.fay", "auditor")
    code, out, err = run([*report_args(audit_gallery, audit_key), "--actor", "officer.bert"], capsys)
    assert code == 1 and out == "" and "auditor" in err
    code, out, _ = run([*report_args(audit_gallery, audit_key), "--actor", "aud.fay"], capsys)
    assert code == 0 and json.loads(out)["report"] == "transparency"
