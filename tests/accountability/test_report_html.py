"""The transparency report's page escapes what it shows: a case reference, purpose or log path
holding markup and quotes comes back as that text, never as markup. Built from audit records
through the real `transparency` and `to_html`."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from facestream.accountability.audit import AuditRecord
from facestream.accountability.clock import parse_instant
from facestream.accountability.report import LogState, to_html, transparency

EVIL = "<script>alert(1)</script>\"'&"
HOUR = 3_600_000
FROM = parse_instant("2027-03-02T00:00:00Z", "from")
TO = FROM + 3 * 24 * HOUR
AUTH = "auth_000000000000000a"


class Page(HTMLParser):
    """The tags, text and attribute values of a page, as a browser would read them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.values: list[str] = []
        self.text = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.values += [value for _, value in attrs if value is not None]

    def handle_data(self, data: str) -> None:
        self.text += data


def record(seq: int, at_ms: int, action: str, auth: str | None = AUTH, **objects: Any) -> AuditRecord:
    return AuditRecord(seq, at_ms, "someone", "system", action, auth, objects)


def history() -> list[AuditRecord]:
    grant = {"case_ref": f"case:{EVIL}", "purpose": f"purpose:{EVIL}", "valid_from_ms": FROM - HOUR,
             "valid_until_ms": TO + HOUR}  # fmt: skip
    return [
        record(0, FROM - HOUR, "authorisation.grant", **grant),
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
