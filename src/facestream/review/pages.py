"""The review web app's HTML: server-rendered, no JavaScript, every value escaped.

Pages are plain functions from data to a string. The style sheet is served from
/static/review.css, so the Content-Security-Policy can forbid inline styles and scripts.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

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

NOTHING_DECIDED = '<p class="empty">Nothing decided recently.</p>'
STATUS_TEXT = {
    "pending": "Waiting for review",
    "confirmed": "Confirmed alert",
    "rejected": "Rejected",
    "expired": "Expired without a decision",
}


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the signed-in reviewer and their session's CSRF token."""

    name: str
    role: str
    csrf: str


def layout(title: str, body: str, viewer: Viewer | None = None, message: str | None = None) -> str:
    account = ""
    if viewer is not None:
        account = (
            f'<span class="who">Signed in as <strong>{e(viewer.name)}</strong> ({e(viewer.role)})</span>'
            f'<form method="post" action="/logout" class="inline">{csrf_field(viewer)}'
            '<button class="link" type="submit">Sign out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)} · facestream review</title><link rel="stylesheet" href="/static/review.css">'
        '</head><body><header><a class="brand" href="/">facestream <span>review</span></a>'
        f"<nav>{account}</nav></header><main>{notice(message)}{body}</main>"
        "<footer>Two different reviewers must confirm a candidate before it becomes an alert. "
        "Every decision is recorded in the audit log with your name.</footer></body></html>"
    )


def notice(code: str | None) -> str:
    if code is None or code not in MESSAGES:
        return ""
    kind, text = MESSAGES[code]
    return f'<p class="notice {kind}" role="status">{e(text)}</p>'


def csrf_field(viewer: Viewer) -> str:
    return f'<input type="hidden" name="csrf" value="{e(viewer.csrf)}">'


def login_page(form_token: str, message: str | None = None, name: str = "") -> str:
    body = (
        '<section class="card narrow"><h1>Reviewer sign-in</h1>'
        '<form method="post" action="/login" class="stack">'
        f'<input type="hidden" name="csrf" value="{e(form_token)}">'
        '<label for="name">Account name</label>'
        f'<input id="name" name="name" autocomplete="username" required value="{e(name)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        '<button id="sign-in" type="submit" class="primary">Sign in</button></form>'
        '<p class="hint">Accounts are created by an operator (<code>facestream review add-reviewer</code>); '
        "deciding needs the reviewer role.</p></section>"
    )
    return layout("Sign in", body, message=message)


def _left(review: CandidateReview, now_ms: int) -> str:
    seconds = max(0, (review.expires_at_ms - now_ms) // 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _case(auth: Authorisation | None) -> str:
    return e(auth.case_ref) if auth else '<span class="muted">unknown</span>'


def queue_page(
    viewer: Viewer,
    pending: Iterable[CandidateReview],
    closed: Iterable[CandidateReview],
    auths: Mapping[str, Authorisation],
    now_ms: int,
    required: int,
) -> str:
    rows = []
    for r in pending:
        done = len(r.confirmations)
        mine = " (incl. you)" if viewer.name in r.confirmed_by else ""
        rows.append(
            f'<tr id="row-{e(r.candidate_id)}">'
            f'<td><img class="thumb" alt="camera crop" src="/candidates/{e(r.candidate_id)}/crop"></td>'
            f"<td><strong>{e(r.identity)}</strong></td><td>{e(r.ref.camera_id)}</td>"
            f"<td>{e(iso(r.ref.captured_at_ms))}</td><td>{r.score:.2f}</td>"
            f"<td>{_case(auths.get(r.authorisation_id))}</td>"
            f"<td>{done} of {required}{mine}</td><td>{e(_left(r, now_ms))}</td>"
            f'<td><a class="button" href="/candidates/{e(r.candidate_id)}">Review</a></td></tr>'
        )
    waiting = (
        "<table><thead><tr><th>Camera crop</th><th>Watchlist identity</th><th>Camera</th>"
        "<th>Seen at (UTC)</th><th>Score</th><th>Case</th><th>Confirmed</th><th>Time left</th><th></th>"
        "</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No candidate is waiting for review.</p>'
    )
    done_rows = [
        f'<tr id="closed-{e(r.candidate_id)}"><td><strong>{e(r.identity)}</strong></td>'
        f"<td>{e(r.ref.camera_id)}</td><td>{e(iso(r.ref.captured_at_ms))}</td>"
        f'<td><span class="badge {e(r.status)}">{e(STATUS_TEXT[r.status])}</span></td>'
        f"<td>{e(', '.join(r.confirmed_by) if r.status == 'confirmed' else _by(r))}</td>"
        f"<td>{e(iso(r.closed_at_ms or 0))}</td>"
        f'<td><a href="/candidates/{e(r.candidate_id)}">Details</a></td></tr>'
        for r in closed
    ]
    recent = (
        "<h2>Recently decided</h2><table><thead><tr><th>Watchlist identity</th><th>Camera</th>"
        "<th>Seen at (UTC)</th><th>Outcome</th><th>By</th><th>Closed at (UTC)</th><th></th></tr></thead>"
        f"<tbody>{''.join(done_rows)}</tbody></table>"
        if done_rows
        else ""
    )
    body = (
        f'<section class="card"><h1>Candidates waiting for review <span class="count">{len(rows)}</span></h1>'
        f"{waiting}</section>"
        f'<section class="card">{recent or NOTHING_DECIDED}</section>'
    )
    return layout("Queue", body, viewer)


def _by(r: CandidateReview) -> str:
    if r.rejection is not None:
        return r.rejection.reviewer
    return "review window ended" if r.close_reason == "window" else "authorisation ended"


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
    if r.pending:
        crop = (
            f'<img id="crop" alt="face crop from the camera" src="/candidates/{e(r.candidate_id)}/crop">'
            if has_crop
            else '<p class="muted">No crop was sent with this candidate.</p>'
        )
        enrolled = (
            f'<img id="enrolled" alt="enrolled photo" src="/candidates/{e(r.candidate_id)}/enrolled">'
            if enrolled_note is None
            else f'<p class="muted">{e(enrolled_note)}</p>'
        )
        images = (
            '<div class="compare">'
            f"<figure>{crop}<figcaption>Camera {e(r.ref.camera_id)}, "
            f"{e(iso(r.ref.captured_at_ms))}</figcaption></figure>"
            f"<figure>{enrolled}<figcaption>Enrolled photo of {e(r.identity)}</figcaption></figure></div>"
        )
    else:
        images = (
            '<p class="muted">Review has ended: the face crop was purged and the enrolled photo is no longer '
            "shown.</p>"
        )
    facts = [
        ("Watchlist identity", e(r.identity)),
        ("Similarity score", f"{r.score:.3f}"),
        ("Camera", e(r.ref.camera_id)),
        ("Seen at (UTC)", e(iso(r.ref.captured_at_ms))),
        ("Authorisation", f"<code>{e(r.authorisation_id)}</code>"),
        ("Case reference", _case(auth)),
    ]
    if auth is not None:
        facts += [
            ("Purpose", e(auth.purpose)),
            ("Legal basis", e(auth.legal_basis)),
            ("Issued by", e(auth.issued_by)),
            ("Valid until (UTC)", e(iso(auth.valid_until_ms))),
        ]
    facts += [
        ("Entered review (UTC)", e(iso(r.opened_at_ms))),
        ("Status", f'<span id="status" class="badge {e(r.status)}">{e(STATUS_TEXT[r.status])}</span>'),
        (
            "Confirmed by",
            e(", ".join(r.confirmed_by) or "nobody yet") + f" ({len(r.confirmations)} of {required})",
        ),
    ]
    if r.pending:
        facts.append(("Review window ends in", e(_left(r, now_ms))))
    if r.status == "confirmed":
        facts.append(("Alert id", f'<code id="alert-id">{e(r.alert_id)}</code>'))
    if r.rejection is not None:
        facts.append(("Rejected by", e(r.rejection.reviewer)))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    body = (
        f'<p><a href="/">← Back to the queue</a></p><section class="card"><h1>Candidate: {e(r.identity)}</h1>'
        f'<div class="review">{images}<div class="side"><table class="facts">{table}</table>'
        f"{_actions(viewer, r)}</div></div></section>"
    )
    return layout(f"Candidate {r.identity}", body, viewer, message)


def _actions(viewer: Viewer, r: CandidateReview) -> str:
    if not r.pending:
        return ""
    action = f"/candidates/{e(r.candidate_id)}/decision"
    confirm = (
        '<p class="notice warn">You confirmed this candidate. A different reviewer must confirm it too.</p>'
        if viewer.name in r.confirmed_by
        else f'<form method="post" action="{action}" class="inline">{csrf_field(viewer)}'
        '<input type="hidden" name="decision" value="confirm">'
        '<button id="confirm" class="confirm" type="submit">Confirm: same person</button></form>'
    )
    reject = (
        f'<form method="post" action="{action}" class="inline">{csrf_field(viewer)}'
        '<input type="hidden" name="decision" value="reject">'
        '<button id="reject" class="reject" type="submit">Reject: not the same person</button></form>'
    )
    return f'<div class="actions">{confirm}{reject}</div>'


def error_page(status: int, text: str, viewer: Viewer | None = None) -> str:
    return layout(
        f"{status}", f'<section class="card narrow"><h1>{status}</h1><p>{e(text)}</p></section>', viewer
    )


def css() -> str:
    return (resources.files("facestream.review") / "static" / "review.css").read_text()
