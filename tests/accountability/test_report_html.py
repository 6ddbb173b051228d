"""The transparency report's page escapes what it shows (a case reference, purpose or log path
holding markup and quotes comes back as that text, never as markup), and its plots of candidates
and confirmed over time agree with the log. Built from audit records through the real
`transparency` and `to_html`."""

from __future__ import annotations

import random
from typing import Any

import pytest

from facestream.accountability.audit import AuditRecord
from facestream.accountability.clock import parse_instant
from facestream.accountability.report import (
    FRAME,
    MAX_BUCKETS,
    TIMELINE,
    LogState,
    bucket_ms,
    plot,
    to_html,
    transparency,
)
from tests.fixtures.html import Page

EVIL = "<script>alert(1)</script>\"'&"
HOUR = 3_600_000
DAY = 24 * HOUR
FROM = parse_instant("2027-03-02T00:00:00Z", "from")
TO = FROM + 3 * 24 * HOUR
AUTH = "auth_000000000000000a"


def record(seq: int, at_ms: int, action: str, auth: str | None = AUTH, **objects: Any) -> AuditRecord:
    return AuditRecord(seq, at_ms, "someone", "system", action, auth, objects)


def history() -> list[AuditRecord]:
    return [
        record(
            0,
            FROM - HOUR,
            "authorisation.grant",
            case_ref=f"case:{EVIL}",
            purpose=f"purpose:{EVIL}",
            valid_from_ms=FROM - HOUR,
            valid_until_ms=TO + HOUR,
        ),
        record(1, FROM + HOUR, "identify.run", None, authorisations=[AUTH]),
        record(2, FROM + 2 * HOUR, "candidate.open", candidate_id="c1"),
        record(3, FROM + 3 * HOUR, "alert.confirmed", candidate_id="c1"),
        record(4, FROM + 30 * HOUR, "candidate.open", candidate_id="c2"),
    ]


def test_values_from_the_log_are_text_never_markup() -> None:
    log = LogState(f"path:{EVIL}", f"chain:{EVIL}", 5, 4, f"hash:{EVIL}")
    html = to_html(transparency(history(), FROM, TO, log))
    page = Page(html)
    assert "script" not in page.tags and "<script" not in html.lower() and EVIL not in html
    for field in ("case", "purpose", "path", "chain", "hash"):
        assert f"{field}:{EVIL}" in page.text, field
    assert "case:&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in html


def test_a_missing_value_shows_as_a_dash_and_the_page_ends_with_a_newline() -> None:
    records = [record(0, FROM + HOUR, "candidate.open", candidate_id="c1")]  # no grant: no case, purpose
    html = to_html(transparency(records, FROM, TO, LogState("p", None, 1, 0, None)))
    assert "<td>—</td><td>—</td>" in html and "(chain —," in html and html.endswith("</html>\n")


def test_candidates_and_confirmed_are_counted_a_bucket_at_a_time() -> None:
    report = transparency(history(), FROM, TO, LogState("p", None, 5, 4, None))
    assert report["timeline"] == {"bucket_ms": 6 * HOUR, "buckets": 12, "counts": ["candidates", "confirmed"]}
    (row,) = report["authorisations"]
    assert row["timeline"] == {
        "candidates": [1, 0, 0, 0, 0, 1, *[0] * 6],  # opened 2 h and 30 h into the period
        "confirmed": [1, *[0] * 11],
    }


@pytest.mark.parametrize("seed", range(5))
def test_the_timeline_equals_an_independent_tally_and_adds_up_to_the_counts(seed: int) -> None:
    rng = random.Random(seed)
    auths = [f"auth_{n:016x}" for n in range(3)]
    lo = FROM + rng.randrange(HOUR)
    hi = lo + rng.choice([5 * HOUR, 3 * 24 * HOUR, 40 * 24 * HOUR, 400 * 24 * HOUR]) + rng.randrange(HOUR)
    times = sorted(rng.randrange(lo - (hi - lo) // 4, hi + (hi - lo) // 4) for _ in range(300))
    actions = ["candidate.open", "alert.confirmed", "review.reject", "candidate.expire"]
    records = [record(i, at, rng.choice(actions), rng.choice(auths)) for i, at in enumerate(times)]
    report = transparency(records, lo, hi, LogState("p", None, len(records), len(records) - 1, None))

    size, n = report["timeline"]["bucket_ms"], report["timeline"]["buckets"]
    starts = [lo + i * size for i in range(n)]
    assert n <= MAX_BUCKETS and starts[-1] < hi <= starts[-1] + size
    expected = {(a, name): [0] * n for a in auths for name in TIMELINE}
    names = {"candidate.open": "candidates", "alert.confirmed": "confirmed"}
    for r in records:
        if r.action in names and lo <= r.at_ms < hi:
            i = max(i for i, start in enumerate(starts) if start <= r.at_ms)
            expected[r.authorisation_id or "", names[r.action]][i] += 1
    for row in report["authorisations"]:
        for name in TIMELINE:
            assert row["timeline"][name] == expected[row["authorisation_id"], name]
            assert sum(row["timeline"][name]) == row[name]


@pytest.mark.parametrize(
    ("days", "size"),
    [(0.5, HOUR), (2.5, HOUR), (3, 6 * HOUR), (15, 6 * HOUR), (30, DAY), (365, 7 * DAY), (5 * 365, 31 * DAY)],
)
def test_buckets_are_the_finest_that_fit_the_plot(days: float, size: int) -> None:
    span = int(days * DAY)
    assert bucket_ms(span) == size and -(-span // size) <= MAX_BUCKETS


def test_the_page_plots_each_authorisation_as_inline_svg() -> None:
    report = transparency(history(), FROM, TO, LogState("p", None, 5, 4, None))
    html = to_html(report)
    page = Page(html)
    assert page.tags.count("svg") == 1 and page.tags.count("rect") == 3  # two candidate bars, one confirmed
    assert "<img" not in html and "<script" not in html  # drawn from the numbers: no image, no script
    (drawn,) = [plot(row, report["timeline"], FROM) for row in report["authorisations"]]
    assert drawn.top == 1 and [b.series for b in drawn.bars] == ["candidates", "confirmed", "candidates"]
    for bar in drawn.bars:  # inside the frame; a count equal to the top fills it
        assert FRAME.left <= bar.x and bar.x + bar.width <= FRAME.width - FRAME.right
        assert bar.y == FRAME.top and bar.height == FRAME.inner_height
    assert "2027-03-02T00:00:00Z + 6 hours: candidates 1" in page.text


def test_no_authorisation_no_plots() -> None:
    html = to_html(transparency([], FROM, TO, LogState("p", None, 0, None, None)))
    assert "<svg" not in html and "no authorisation in this period" in html
