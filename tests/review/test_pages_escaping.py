"""Every value a review page shows is escaped: a name, camera, case reference or token holding
markup and quotes comes back as that text (in an element or an attribute), never as markup.

The pages are rendered through the real page functions, in every state a page has (pending,
confirmed, rejected, expired; with and without its authorisation, crop, enrolled photo, notice).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from facestream.accountability.authorisations import Authorisation
from facestream.messages import BBox, Candidate, FrameRef, Hit
from facestream.review import pages
from facestream.review.decisions import CandidateReview, Vote
from tests.fixtures.html import Page

EVIL = "<script>alert(1)</script>\"'&"
NOW = 1_800_000_000_000
FIELDS = (
    "identity", "camera", "zone", "candidate", "viewer", "role", "csrf", "case", "basis", "issuer", "voter",
    "note",
)  # fmt: skip
"""Each untrusted value is EVIL tagged with its field, so a test can tell which one was not escaped."""


def evil(field: str) -> str:
    return f"{field}:{EVIL}"


def review() -> CandidateReview:
    hit = Hit(
        FrameRef(evil("camera"), "f@1", NOW - 5_000, "rtsp://x"), 0, BBox(0, 0, 10, 10), 0.5,
        evil("identity"), "entry", "auth_0123456789abcdef", "m", b"", evil("zone"),
    )  # fmt: skip
    opened = CandidateReview.of(Candidate.open_episode(hit), NOW, 60_000)
    return replace(opened, candidate_id=evil("candidate"))


AUTH = Authorisation(
    id="auth_0123456789abcdef", case_ref=evil("case"), legal_basis=evil("basis"), purpose="wanted",
    issued_by=evil("issuer"), valid_from_ms=NOW - 1, valid_until_ms=NOW + 1, granted_by="g", granted_at_ms=1,
)  # fmt: skip
VIEWER = pages.Viewer(evil("viewer"), evil("role"), evil("csrf"))
PENDING = review()
STATES = {
    "pending": PENDING,
    "confirmed-once": replace(PENDING, confirmations=(Vote(evil("voter"), "reviewer", 1, "d"),)),
    "mine": replace(PENDING, confirmations=(Vote(VIEWER.name, "reviewer", 1, "d"),)),
    "confirmed": replace(
        PENDING, status="confirmed", closed_at_ms=NOW,
        confirmations=(Vote(evil("voter"), "reviewer", 1, "d"), Vote("rob", "reviewer", 2, "e")),
    ),
    "rejected": replace(
        PENDING, status="rejected", closed_at_ms=NOW, rejection=Vote(evil("voter"), "reviewer", 3, "e")
    ),
    "expired": replace(PENDING, status="expired", closed_at_ms=NOW, close_reason="window"),
}  # fmt: skip


def every_page() -> dict[str, str]:
    found = {
        "login": pages.login_page(evil("csrf"), "bad-login", evil("viewer")),
        "error": pages.error_page(403, evil("note"), VIEWER),
        "queue": pages.queue_page(
            VIEWER, [s for s in STATES.values() if s.pending], [s for s in STATES.values() if not s.pending],
            {AUTH.id: AUTH}, NOW, 2,
        ),
        "queue-no-auth": pages.queue_page(VIEWER, [PENDING], [], {}, NOW, 2),
    }  # fmt: skip
    for name, state in STATES.items():
        for auth in (AUTH, None):
            for note in (None, evil("note")):
                found[f"candidate-{name}-{auth is not None}-{note is not None}"] = pages.candidate_page(
                    VIEWER, state, auth, NOW, 2, has_crop=note is None, enrolled_note=note, message="refused"
                )
    return found


PAGES = every_page()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_untrusted_values_are_text_never_markup(name: str) -> None:
    html = PAGES[name]
    page = Page(html)
    assert "script" not in page.tags
    assert "<script" not in html.lower() and EVIL not in html
    shown = [v for v in (page.text, *page.values) if EVIL in v]
    assert shown, "the evil values were not shown at all: the test would pass vacuously"
    # A quote that closed an attribute early would cut the value: each one comes back whole.
    for value in page.values:
        if EVIL[:7] in value:
            assert value.endswith(EVIL) or f"{EVIL}/" in value, value


def test_every_untrusted_field_is_shown_somewhere_and_escaped() -> None:
    seen = set()
    for html in PAGES.values():
        page = Page(html)
        for field in FIELDS:
            if evil(field) in page.text or any(evil(field) in v for v in page.values):
                seen.add(field)
    assert seen == set(FIELDS)


def test_the_escaped_form_is_what_is_sent() -> None:
    html = PAGES["candidate-pending-True-False"]
    assert "identity:&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;" in html
    assert 'value="csrf:&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"' in html
