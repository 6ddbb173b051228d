"""The review web app's HTML: server-rendered, no JavaScript, every value escaped.

Pages are Jinja2 templates (review/templates) rendered with autoescape on, so a value is
escaped unless a template says otherwise (none does): a hand-written escaper missed once is
an XSS in the reviewers' tool. StrictUndefined makes a misspelt name in a template an error
instead of an empty string. The style sheet is served from /static/review.css, so the
Content-Security-Policy can forbid inline styles and scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from facestream.accountability.authorisations import Authorisation
from facestream.accountability.clock import iso
from facestream.review.decisions import CandidateReview

MESSAGES: Mapping[str, tuple[str, str]] = {
    "counted-confirm": (
        "ok",
        "Your confirmation is recorded. A second, different reviewer must confirm too.",
    ),
    "counted-reject": ("ok", "Your rejection is recorded. The candidate is closed; no alert is raised."),
    "confirmed": ("ok", "Your confirmation was the second one: the alert is confirmed and published."),
    "repeated": ("warn", "You had already confirmed this candidate; a repeat confirmation counts once."),
    "pending": ("warn", "Your decision was sent; it is not applied yet. Reload this page in a moment."),
    "refused": ("error", "Your decision was refused: the candidate is closed, expired or unknown."),
    "unavailable": ("error", "Your decision could not be sent (Kafka unavailable); nothing was recorded."),
    "signed-out": ("ok", "You are signed out."),
    "bad-login": ("error", "Wrong account name or password."),
    "locked": ("error", "Too many sign-in attempts from here; wait a few minutes, then try again."),
    "no-role": ("error", "This account does not hold the reviewer role; ask an operator."),
    "expired-form": ("error", "The form expired; please try again."),
}
"""Messages by code: pages never echo text from the request."""

STATUS_TEXT = {
    "pending": "Waiting for review",
    "confirmed": "Confirmed alert",
    "rejected": "Rejected",
    "expired": "Expired without a decision",
}


def time_left(review: CandidateReview, now_ms: int) -> str:
    """What is left of the review window, as the queue and the candidate page show it."""
    seconds = max(0, (review.expires_at_ms - now_ms) // 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def decided_by(r: CandidateReview) -> str:
    """The queue's "By" column: who confirmed or rejected, or why the candidate expired."""
    if r.status == "confirmed":
        return ", ".join(r.confirmed_by)
    if r.rejection is not None:
        return r.rejection.reviewer
    return "review window ended" if r.close_reason == "window" else "authorisation ended"


TEMPLATES = Environment(
    loader=PackageLoader("facestream.review", "templates"),
    autoescape=True,  # every template is HTML; select_autoescape would not match the .html.j2 names
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # package data: it does not change under a running service
)
TEMPLATES.filters["iso"] = iso
TEMPLATES.globals.update(status_text=STATUS_TEXT, time_left=time_left, decided_by=decided_by)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the signed-in reviewer and their session's CSRF token."""

    name: str
    role: str
    csrf: str


def render(
    template: str, *, title: str, viewer: Viewer | None, message: str | None = None, **values: Any
) -> str:
    """One page in the layout; `message` is a code from MESSAGES (an unknown code shows nothing)."""
    found = MESSAGES.get(message) if message is not None else None
    return TEMPLATES.get_template(template).render(title=title, viewer=viewer, notice=found, **values)


def notice(code: str | None) -> str:
    """The notice for a message code, or "" for none or an unknown code (never text from a request)."""
    found = MESSAGES.get(code) if code is not None else None
    parts = TEMPLATES.get_template("parts.html.j2").module
    return str(parts.notice(found))  # type: ignore[attr-defined]  # a macro: an attribute made at run time


def login_page(form_token: str, message: str | None = None, name: str = "") -> str:
    return render(
        "login.html.j2", title="Sign in", viewer=None, message=message, form_token=form_token, name=name
    )


def queue_page(
    viewer: Viewer,
    pending: Iterable[CandidateReview],
    closed: Iterable[CandidateReview],
    auths: Mapping[str, Authorisation],
    now_ms: int,
    required: int,
) -> str:
    return render(
        "queue.html.j2",
        title="Queue",
        viewer=viewer,
        pending=list(pending),
        closed=list(closed),
        auths=auths,
        now_ms=now_ms,
        required=required,
    )


def candidate_page(
    viewer: Viewer,
    r: CandidateReview,
    auth: Authorisation | None,
    now_ms: int,
    required: int,
    *,
    has_crop: bool,
    enrolled_note: str | None,
    message: str | None = None,
) -> str:
    return render(
        "candidate.html.j2",
        title=f"Candidate {r.identity}",
        viewer=viewer,
        message=message,
        r=r,
        auth=auth,
        now_ms=now_ms,
        required=required,
        has_crop=has_crop,
        enrolled_note=enrolled_note,
    )


def error_page(status: int, text: str, viewer: Viewer | None = None) -> str:
    return render("error.html.j2", title=f"{status}", viewer=viewer, status=status, text=text)


def css() -> str:
    return (resources.files("facestream.review") / "static" / "review.css").read_text()
