"""The transparency report: what was searched for, found, confirmed and rejected, per authorisation.

Computed only from the audit log (after it verifies), so it agrees with the log by
construction, and it names the log's head so anyone holding the log can recompute it. It
holds no personal data: no identities, no images, no names of staff — only authorisation
ids, case references, purposes, validity and counts. What each count means:

| count | audit records, with `at_ms` in [from, to) |
| --- | --- |
| searches | `identify.run`: one per authorisation in `objects.authorisations` (or `authorisation_id`) |
| candidates | `candidate.open` under the authorisation |
| confirmed | `alert.confirmed` (two reviewers agreed) |
| rejected | `review.reject` |
| expired | `candidate.expire` (the review window ended without a decision) |
| enrollments | `gallery.enroll` |

An authorisation's case reference, purpose and validity come from its `authorisation.grant`
record (objects `case_ref`, `purpose`, `valid_from_ms`, `valid_until_ms`); its status at the
end of the period from `authorisation.revoke` / `authorisation.expire` records before `to`.

Candidates and confirmed are also given over time, for the page's plots: the period is cut
into `timeline.buckets` buckets of `timeline.bucket_ms` from `from` (the last may be cut short
by `to`), and each authorisation's `timeline` holds a list of counts a bucket. The plots are
SVG drawn by the template from those numbers: no plotting library at run time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from facestream.accountability.audit import AuditRecord
from facestream.accountability.clock import iso

SEARCH = "identify.run"
GRANT = "authorisation.grant"
REVOKE = "authorisation.revoke"
EXPIRE = "authorisation.expire"
COUNTED: Mapping[str, str] = {
    "candidate.open": "candidates",
    "alert.confirmed": "confirmed",
    "review.reject": "rejected",
    "candidate.expire": "expired",
    "gallery.enroll": "enrollments",
}
COUNTS = ("searches", "candidates", "confirmed", "rejected", "expired", "enrollments")
TIMELINE = ("candidates", "confirmed")
"""The counts also given a bucket at a time (the page plots them)."""
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_BUCKETS = 60
"""A plot of more bars than this is unreadable at the page's width."""


def bucket_ms(span_ms: int) -> int:
    """The finest of 1 hour, 6 hours, 1 day, 1 week that cuts the period into at most MAX_BUCKETS
    buckets; whole days beyond a 60-week period."""
    for size in (HOUR_MS, 6 * HOUR_MS, DAY_MS, 7 * DAY_MS):
        if span_ms <= size * MAX_BUCKETS:
            return size
    return -(-span_ms // (MAX_BUCKETS * DAY_MS)) * DAY_MS


@dataclass(frozen=True, slots=True)
class LogState:
    """Which log the report was computed from: anyone holding it can check the report against it."""

    path: str
    chain: str | None
    records: int
    last_seq: int | None
    last_hash: str | None


@dataclass
class _Authorisation:
    id: str
    case_ref: str | None = None
    purpose: str | None = None
    valid_from_ms: int | None = None
    valid_until_ms: int | None = None
    granted_at_ms: int | None = None
    ended: str | None = None
    ended_at_ms: int | None = None
    counts: Counter[str] = field(default_factory=Counter)
    over_time: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(count, bucket index) -> how many."""

    def overlaps(self, lo: int, hi: int) -> bool:
        if self.valid_from_ms is None or self.valid_until_ms is None:
            return False
        ended = self.ended_at_ms if self.ended_at_ms is not None else self.valid_until_ms
        return self.valid_from_ms < hi and min(self.valid_until_ms, ended) > lo

    def status(self) -> str:
        return self.ended or ("active" if self.granted_at_ms is not None else "unknown")

    def to_json(self, buckets: int) -> dict[str, Any]:
        return {
            "authorisation_id": self.id,
            "case_ref": self.case_ref,
            "purpose": self.purpose,
            "valid_from": iso(self.valid_from_ms) if self.valid_from_ms is not None else None,
            "valid_until": iso(self.valid_until_ms) if self.valid_until_ms is not None else None,
            "status_at_end": self.status(),
            "ended_at": iso(self.ended_at_ms) if self.ended_at_ms is not None else None,
            **{name: self.counts[name] for name in COUNTS},
            "timeline": {name: [self.over_time[name, i] for i in range(buckets)] for name in TIMELINE},
        }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def transparency(records: Iterable[AuditRecord], from_ms: int, to_ms: int, log: LogState) -> dict[str, Any]:
    """The report as a JSON-ready dict; `records` are a verified log, in order."""
    auths: dict[str, _Authorisation] = {}
    searches = 0
    bucket = bucket_ms(to_ms - from_ms)
    buckets = -(-(to_ms - from_ms) // bucket)
    in_period = 0

    def auth(auth_id: str) -> _Authorisation:
        return auths.setdefault(auth_id, _Authorisation(auth_id))

    for rec in records:
        if rec.at_ms >= to_ms:
            continue
        _track_status(rec, auth)
        if rec.at_ms < from_ms:
            continue
        in_period += 1
        if rec.action == SEARCH:
            searches += 1
            for auth_id in _searched(rec):
                auth(auth_id).counts["searches"] += 1
        elif rec.action in COUNTED and rec.authorisation_id is not None:
            a, name = auth(rec.authorisation_id), COUNTED[rec.action]
            a.counts[name] += 1
            if name in TIMELINE:
                a.over_time[name, (rec.at_ms - from_ms) // bucket] += 1
    rows = [
        a.to_json(buckets)
        for a in sorted(auths.values(), key=lambda a: (a.granted_at_ms or 0, a.id))
        if sum(a.counts.values()) or a.overlaps(from_ms, to_ms)
    ]
    totals = {name: sum(row[name] for row in rows) for name in COUNTS}
    totals["searches"] = searches
    return {
        "report": "transparency",
        "period": {"from": iso(from_ms), "to": iso(to_ms), "from_ms": from_ms, "to_ms": to_ms},
        "audit_log": {
            "path": log.path,
            "chain": log.chain,
            "records": log.records,
            "records_in_period": in_period,
            "last_seq": log.last_seq,
            "last_hash": log.last_hash,
            "verified": True,
        },
        "totals": totals,
        "timeline": {"bucket_ms": bucket, "buckets": buckets, "counts": list(TIMELINE)},
        "authorisations": rows,
        "definitions": {
            "searches": "identify runs that checked the authorisation's entries",
            "candidates": "faces that matched one of its entries and went to review",
            "confirmed": "candidates two different reviewers confirmed (alerts)",
            "rejected": "candidates a reviewer rejected",
            "expired": "candidates whose review window ended without a decision",
            "enrollments": "enrollment actions under the authorisation",
        },
    }


def _track_status(rec: AuditRecord, auth: Any) -> None:
    if rec.authorisation_id is None:
        return
    if rec.action == GRANT:
        a = auth(rec.authorisation_id)
        a.granted_at_ms = rec.at_ms
        a.case_ref = _text(rec.objects.get("case_ref"))
        a.purpose = _text(rec.objects.get("purpose"))
        a.valid_from_ms = _int(rec.objects.get("valid_from_ms"))
        a.valid_until_ms = _int(rec.objects.get("valid_until_ms"))
    elif rec.action in (REVOKE, EXPIRE):
        a = auth(rec.authorisation_id)
        if a.ended is None:
            a.ended = "revoked" if rec.action == REVOKE else "expired"
            a.ended_at_ms = rec.at_ms


def _searched(rec: AuditRecord) -> list[str]:
    checked = rec.objects.get("authorisations")
    ids = [a for a in checked if isinstance(a, str)] if isinstance(checked, list) else []
    if rec.authorisation_id is not None:
        ids.append(rec.authorisation_id)
    return list(dict.fromkeys(ids))


def bucket_label(size_ms: int) -> str:
    """A bucket's width in words, for the plots' captions."""
    if size_ms % DAY_MS == 0:
        days = size_ms // DAY_MS
        return "1 day" if days == 1 else f"{days} days"
    hours = size_ms // HOUR_MS
    return "1 hour" if hours == 1 else f"{hours} hours"


@dataclass(frozen=True, slots=True)
class Frame:
    """A plot's SVG size and the margins around its bars (user units): the margins hold the axes' labels."""

    width: int = 560
    height: int = 150
    left: int = 34
    right: int = 8
    top: int = 10
    bottom: int = 22

    @property
    def inner_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def base(self) -> int:
        """The y of the zero line (SVG's y grows downwards)."""
        return self.height - self.bottom


FRAME = Frame()


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a count (`series`) in one bucket, placed in the frame, and the tooltip that says so."""

    series: str
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True, slots=True)
class Plot:
    """One authorisation's candidates and confirmed over the period, laid out for the template's SVG.

    The geometry is computed here, from numbers only; the template writes it out (and escapes the
    case reference and labels like everything else)."""

    authorisation_id: str
    case_ref: str | None
    totals: Mapping[str, int]
    top: int
    """The highest count in one bucket: the height of the frame (at least 1)."""
    bars: tuple[Bar, ...]


def plot(row: Mapping[str, Any], timeline: Mapping[str, Any], from_ms: int, frame: Frame = FRAME) -> Plot:
    """Bars for one row of `transparency()`'s report: a group a bucket, one bar a count in TIMELINE
    (a zero draws no bar), heights to the row's own highest count."""
    n, size, series = timeline["buckets"], timeline["bucket_ms"], row["timeline"]
    top = max([1, *(value for name in TIMELINE for value in series[name])])
    slot = frame.inner_width / n
    width = slot * 0.8 / len(TIMELINE)
    bars = []
    for i in range(n):
        start = f"{iso(from_ms + i * size)} + {bucket_label(size)}"
        for k, name in enumerate(TIMELINE):
            value = series[name][i]
            if not value:
                continue
            height = value * frame.inner_height / top
            x = frame.left + i * slot + slot * 0.1 + k * width
            y = frame.base - height
            label = f"{start}: {name} {value}"
            bars.append(Bar(name, round(x, 2), round(y, 2), round(width, 2), round(height, 2), label))
    totals = {name: row[name] for name in TIMELINE}
    return Plot(row["authorisation_id"], row["case_ref"], totals, top, tuple(bars))


def _dash(value: Any) -> Any:
    """A missing value (None) shows as an em dash; autoescape still escapes whatever else it is."""
    return "—" if value is None else value


TEMPLATES = Environment(
    loader=PackageLoader("facestream.accountability", "templates"),
    autoescape=True,  # an HTML page; select_autoescape would not match the .html.j2 name
    undefined=StrictUndefined,  # a misspelt field in the template fails instead of printing nothing
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,  # a file that ends in a newline, as before
    auto_reload=False,
)
TEMPLATES.filters["dash"] = _dash


def to_html(report: Mapping[str, Any]) -> str:
    """A readable page of the same report (accountability/templates), every value escaped by Jinja2."""
    return TEMPLATES.get_template("transparency.html.j2").render(
        period=report["period"],
        log=report["audit_log"],
        totals=report["totals"],
        authorisations=report["authorisations"],
        definitions=report["definitions"],
        counts=COUNTS,
        plots=[
            plot(row, report["timeline"], report["period"]["from_ms"]) for row in report["authorisations"]
        ],
        bucket=bucket_label(report["timeline"]["bucket_ms"]),
        frame=FRAME,
    )
