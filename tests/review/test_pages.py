"""The review pages escape everything they show and echo nothing from the request."""

from __future__ import annotations

from facestream.messages import BBox, Candidate, FrameRef, Hit
from facestream.review import pages
from facestream.review.decisions import CandidateReview

EVIL = '<script>alert("x")</script>'


def review(camera: str = EVIL) -> CandidateReview:
    hit = Hit(
        FrameRef(camera, f"{camera}@1", 1_800_000_000_000, "rtsp://x"), 0, BBox(0, 0, 10, 10), 0.5,
        "O'Brien", "entry", "auth_0123456789abcdef", "m", b"", "riverside",
    )  # fmt: skip
    return CandidateReview.of(Candidate.open_episode(hit), 1_800_000_000_000, 60_000)


def test_values_from_messages_are_escaped_on_the_queue_and_the_candidate_page() -> None:
    viewer = pages.Viewer("rita", "reviewer", 'csrf"><b>')
    r = review()
    for html in (
        pages.queue_page(viewer, [r], [], {}, 1_800_000_000_000, 2),
        pages.candidate_page(viewer, r, None, 1_800_000_000_000, 2, has_crop=True, enrolled_note=None),
    ):
        assert EVIL not in html and "&lt;script&gt;" in html
        assert 'csrf"><b>' not in html
        assert "<script" not in html.lower()
    page = pages.candidate_page(viewer, r, None, 1_800_000_000_000, 2, has_crop=True, enrolled_note=None)
    assert "O&#39;Brien" in page and 'id="confirm"' in page and 'id="reject"' in page


def test_messages_are_chosen_by_code_never_taken_from_the_request() -> None:
    assert pages.notice(EVIL) == "" and pages.notice(None) == ""
    assert "second, different reviewer" in pages.notice("counted-confirm")
    assert pages.login_page("t", EVIL).count("notice") == 0


def test_a_reviewer_who_confirmed_sees_no_confirm_button_and_a_closed_candidate_no_buttons() -> None:
    from dataclasses import replace

    from facestream.review.decisions import Vote

    viewer = pages.Viewer("rita", "reviewer", "t")
    mine = replace(review("cam-1"), confirmations=(Vote("rita", "reviewer", 2, "d"),))
    page = pages.candidate_page(
        viewer, mine, None, 1_800_000_000_000, 2, has_crop=False, enrolled_note="gone"
    )
    assert 'id="confirm"' not in page and 'id="reject"' in page and "gone" in page
    closed = replace(mine, status="rejected", closed_at_ms=3, rejection=Vote("rob", "reviewer", 3, "e"))
    page = pages.candidate_page(
        viewer, closed, None, 1_800_000_000_000, 2, has_crop=False, enrolled_note=None
    )
    assert 'id="confirm"' not in page and 'id="reject"' not in page and 'id="crop"' not in page
