"""The reviewers' web app (aiohttp, on the review service's event loop).

Pages: sign-in, the queue of pending candidates, a candidate (its face crop beside the
enrolled photo, score, camera, time, authorisation and case) with confirm / reject. A JSON
API offers the same to programs. Every route but sign-in and the style sheet needs a
signed-in reviewer: pages redirect to /login, the API answers 401. The reviewer role is
checked on every request (roles.json), so withdrawing it takes effect at once.

Sessions: random tokens in an HttpOnly, SameSite=Strict cookie (Secure unless configured
off); a per-session CSRF token on every POST (form field, or the X-CSRF-Token header for the
API); the sign-in form has its own double-submit token. Responses are never cached
(`Cache-Control: no-store`) and carry a strict Content-Security-Policy; images are served
only to signed-in reviewers and only while the candidate is pending.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from facestream.accountability.audit import Actor
from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.errors import ConfigError, PermissionDenied
from facestream.review import pages
from facestream.review.accounts import ReviewerAccounts
from facestream.review.app import ReviewApp, RoleCheck, now_ms
from facestream.review.decisions import CandidateReview, DecisionRefused
from facestream.review.messages import CANDIDATE_ID, VERDICTS, Decision, Verdict
from facestream.review.photos import EnrolledPhotos
from facestream.review.sessions import Session, Sessions, csrf_ok
from facestream.runtime import metrics

log = logging.getLogger(__name__)

COOKIE = "fs_review"
LOGIN_COOKIE = "fs_review_login"
WAIT_FOR_DECISION_S = 10.0
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebContext:
    """What the handlers need; built once by the service."""

    review: ReviewApp
    accounts: ReviewerAccounts
    sessions: Sessions
    role_of: RoleCheck
    authorisations: AuthorisationStore
    photos: EnrolledPhotos
    cookie_secure: bool


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: Session
    actor: Actor

    @property
    def viewer(self) -> pages.Viewer:
        return pages.Viewer(self.actor.name, self.actor.role, self.session.csrf)


CTX = web.AppKey("ctx", WebContext)


def build_web(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[_headers], client_max_size=64 * 1024)
    app[CTX] = ctx
    app.add_routes(
        [
            web.get("/static/review.css", _css),
            web.get("/login", _login_form),
            web.post("/login", _login),
            web.post("/logout", _logout),
            web.get("/", _queue),
            web.get("/candidates/{cid}", _candidate),
            web.get("/candidates/{cid}/crop", _crop),
            web.get("/candidates/{cid}/enrolled", _enrolled),
            web.post("/candidates/{cid}/decision", _decide_form),
            web.post("/api/login", _api_login),
            web.get("/api/candidates", _api_queue),
            web.get("/api/candidates/{cid}", _api_candidate),
            web.post("/api/candidates/{cid}/decision", _api_decide),
        ]
    )
    return app


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and refusals carry the headers too
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# -- helpers ---------------------------------------------------------------------------------


def _ctx(request: web.Request) -> WebContext:
    return request.app[CTX]


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _api_error(text: str, status: int) -> web.Response:
    return _json({"error": text}, status)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _deny(request: web.Request, status: int, text: str, viewer: pages.Viewer | None = None) -> web.Response:
    """A refusal in the caller's language: JSON for the API, an error page for a browser."""
    if _is_api(request):
        return _api_error(text, status)
    return _page(pages.error_page(status, text, viewer), status)


def _session(request: web.Request) -> Session | None:
    return _ctx(request).sessions.get(request.cookies.get(COOKIE))


def _signed_in(request: web.Request) -> SignedIn | web.Response:
    """The signed-in reviewer, or the response to send instead (redirect, 401 or 403)."""
    session = _session(request)
    if session is None:
        if _is_api(request):
            return _api_error("sign in first (POST /api/login)", 401)
        raise web.HTTPSeeOther("/login")
    try:
        actor = _ctx(request).role_of(session.reviewer)
    except (PermissionDenied, ConfigError) as exc:
        log.warning("review web: %s", exc)
        return _deny(request, 403, f"{session.reviewer} does not hold the reviewer role")
    return SignedIn(session, actor)


def _ready(request: web.Request) -> web.Response | None:
    if _ctx(request).review.ready:
        return None
    return _deny(request, 503, "The review service is starting (recovering its state); try again shortly.")


ReviewerHandler = Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]


def _for_reviewers(*, once_ready: bool = True) -> Callable[[ReviewerHandler], Handler]:
    """Guards a route: only a signed-in reviewer gets through (role checked on every request, so a
    withdrawn role shuts them out at once), and with `once_ready` only once the tables are recovered,
    so nobody reads or decides on a half-replayed queue. The two image routes skip that second check:
    they serve one crop or photo of a page already shown, and answer 404 when it is not there."""

    def guard(handler: ReviewerHandler) -> Handler:
        @functools.wraps(handler)
        async def route(request: web.Request) -> web.StreamResponse:
            who = _signed_in(request)
            if isinstance(who, web.Response):
                return who
            busy = _ready(request) if once_ready else None
            if busy is not None:
                return busy
            return await handler(request, who)

        return route

    return guard


def _candidate_id(request: web.Request) -> str:
    cid = request.match_info["cid"]
    if not CANDIDATE_ID.match(cid):
        raise web.HTTPNotFound()
    return cid


def _review(request: web.Request) -> CandidateReview:
    """The candidate the path names; 404 for an id that is malformed or not under review."""
    found = _ctx(request).review.reviews().get(_candidate_id(request))
    if found is None:
        raise web.HTTPNotFound()
    return found


def _auths(ctx: WebContext) -> Mapping[str, Authorisation]:
    try:
        return ctx.authorisations.all()
    except ConfigError as exc:
        log.error("review web: %s", exc)
        return {}


def _form_text(form: Mapping[str, object], name: str) -> str | None:
    """A form field as text; a missing field or a file upload is None, never an exception."""
    value = form.get(name)
    return value if isinstance(value, str) else None


async def _json_fields(request: web.Request, *names: str) -> tuple[str, ...] | None:
    """The named fields of a JSON object body as text, or None when the body is not such an object."""
    try:
        body = await request.json()
        return tuple(str(body[name]) for name in names)
    except (ValueError, KeyError, TypeError):
        return None


def _set_cookie(response: web.StreamResponse, ctx: WebContext, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, secure=ctx.cookie_secure, samesite="Strict"
    )


def _set_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    ctx = _ctx(request)
    _set_cookie(response, ctx, COOKIE, token, int(ctx.sessions.max_s))


# -- sign-in -----------------------------------------------------------------------------------


async def _css(_request: web.Request) -> web.Response:
    return web.Response(text=pages.css(), content_type="text/css", headers={"Cache-Control": "max-age=3600"})


async def _login_form(request: web.Request) -> web.Response:
    return _login_page(request, request.query.get("m"))


def _login_page(request: web.Request, message: str | None, name: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = _page(pages.login_page(token, message, name), status)
    _set_cookie(response, _ctx(request), LOGIN_COOKIE, token, 900)
    return response


async def _login(request: web.Request) -> web.Response:
    form = await request.post()
    token, submitted = request.cookies.get(LOGIN_COOKIE), _form_text(form, "csrf")
    if not token or submitted is None or not secrets.compare_digest(token, submitted):
        return _login_page(request, "expired-form", status=400)
    name, password = _form_text(form, "name"), _form_text(form, "password")
    if name is None or password is None:
        return _login_page(request, "bad-login", status=400)
    token, refused = await _sign_in(request, name.strip(), password)
    if token is None:
        status = 403 if refused == "no-role" else 401
        return _login_page(request, refused, name.strip()[:64], status)
    response = web.HTTPSeeOther("/")
    _set_session_cookie(response, request, token)
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def _sign_in(request: web.Request, name: str, password: str) -> tuple[str | None, str | None]:
    """(a new session's cookie token, None), or (None, why not: bad-login, locked or no-role)."""
    ctx = _ctx(request)
    ok = await asyncio.to_thread(ctx.accounts.verify, name, password)  # scrypt: off the loop
    if ok is None:
        metrics.REVIEW_SIGNINS.labels("locked").inc()
        return None, "locked"
    if not ok:
        metrics.REVIEW_SIGNINS.labels("failed").inc()
        log.warning("review web: failed sign-in for %r from %s", name[:64], request.remote)
        return None, "bad-login"
    try:
        ctx.role_of(name)
    except (PermissionDenied, ConfigError):
        metrics.REVIEW_SIGNINS.labels("failed").inc()
        return None, "no-role"
    token, _ = ctx.sessions.start(name)
    metrics.REVIEW_SIGNINS.labels("ok").inc()
    log.info("review web: %s signed in from %s", name, request.remote)
    return token, None


async def _logout(request: web.Request) -> web.Response:
    session = _session(request)
    form = await request.post()
    if session is not None and csrf_ok(session, _form_text(form, "csrf")):
        _ctx(request).sessions.end(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/login?m=signed-out")
    response.del_cookie(COOKIE, path="/")
    raise response


# -- pages ---------------------------------------------------------------------------------------


@_for_reviewers()
async def _queue(request: web.Request, who: SignedIn) -> web.Response:
    ctx = _ctx(request)
    book = ctx.review.reviews()
    return _page(
        pages.queue_page(who.viewer, book.pending(), book.closed(), _auths(ctx), now_ms(), book.confirmations)
    )


@_for_reviewers()
async def _candidate(request: web.Request, who: SignedIn) -> web.Response:
    ctx = _ctx(request)
    review = _review(request)
    note = None
    if review.pending:
        _, note = await asyncio.to_thread(ctx.photos.try_photo_of, **_entry(review))
    return _page(
        pages.candidate_page(
            who.viewer,
            review,
            _auths(ctx).get(review.authorisation_id),
            now_ms(),
            ctx.review.reviews().confirmations,
            has_crop=ctx.review.crop_of(review.candidate_id) is not None,
            enrolled_note=note,
            message=request.query.get("m"),
        )
    )


def _entry(review: CandidateReview) -> dict[str, str]:
    return {
        "entry_id": review.entry_id,
        "identity": review.identity,
        "model_id": review.model_id,
        "authorisation_id": review.authorisation_id,
    }


@_for_reviewers(once_ready=False)
async def _crop(request: web.Request, _who: SignedIn) -> web.Response:
    review = _review(request)
    crop = _ctx(request).review.crop_of(review.candidate_id) if review.pending else None
    if crop is None:
        raise web.HTTPNotFound()
    return web.Response(body=crop, content_type="image/jpeg")


@_for_reviewers(once_ready=False)
async def _enrolled(request: web.Request, _who: SignedIn) -> web.Response:
    review = _review(request)
    if not review.pending:
        raise web.HTTPNotFound()
    photo, _ = await asyncio.to_thread(_ctx(request).photos.try_photo_of, **_entry(review))
    if photo is None:
        raise web.HTTPNotFound()
    return web.Response(body=photo, content_type=_image_type(photo))


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    return "image/jpeg" if data.startswith(b"\xff\xd8") else "application/octet-stream"


# -- decisions -----------------------------------------------------------------------------------

Result = Literal[
    "counted-confirm", "counted-reject", "confirmed", "repeated", "pending", "refused", "unavailable"
]


async def _decide(request: web.Request, who: SignedIn, cid: str, verdict: str) -> tuple[int, Result, str]:
    """(HTTP status, result code, detail) of one decision; published only when it would apply."""
    ctx = _ctx(request)
    if verdict not in VERDICTS:
        return 400, "refused", "decision must be confirm or reject"
    decision_verdict: Verdict = "confirm" if verdict == "confirm" else "reject"
    decision = Decision.new(cid, who.actor.name, decision_verdict, now_ms())
    book = ctx.review.reviews()
    try:
        outcome = book.judge(decision, who.actor.role, decision.decided_at_ms)
    except DecisionRefused as exc:
        return 409, "refused", str(exc)
    if not outcome.counted:
        return 409, "repeated", "you have already confirmed this candidate"
    try:
        await ctx.review.submit(decision)
    except Exception:  # the broker did not take it: nothing was decided
        log.exception("review web: could not publish %s's decision on %s", who.actor.name, cid)
        return 503, "unavailable", "the decision could not be sent; nothing was recorded"
    log.info("review web: %s %ss %s (decision %s)", who.actor.name, verdict, cid, decision.decision_id)
    waited = 0.0
    while waited < WAIT_FOR_DECISION_S:
        result = ctx.review.result_of(decision.decision_id)
        if result is not None:
            if result.startswith("refused"):
                return 409, "refused", result
            after = book.get(cid)
            if after is not None and after.status == "confirmed":
                return 200, "confirmed", after.alert_id
            return 200, "counted-confirm" if verdict == "confirm" else "counted-reject", result
        await asyncio.sleep(0.1)
        waited += 0.1
    return 202, "pending", decision.decision_id


@_for_reviewers()
async def _decide_form(request: web.Request, who: SignedIn) -> web.Response:
    cid = _candidate_id(request)  # a malformed id is a 404 before the form is read
    form = await request.post()
    if not csrf_ok(who.session, _form_text(form, "csrf")):
        return _deny(request, 403, "The form is not from this session (CSRF check failed).", who.viewer)
    _review(request)
    _, code, _ = await _decide(request, who, cid, _form_text(form, "decision") or "")
    raise web.HTTPSeeOther(f"/candidates/{cid}?m={code}")


# -- the JSON API ----------------------------------------------------------------------------------

LOGIN_JSON = 'send JSON: {"name": ..., "password": ...}'


async def _api_login(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _api_error(LOGIN_JSON, 415)
    fields = await _json_fields(request, "name", "password")
    if fields is None:
        return _api_error(LOGIN_JSON, 400)
    name, password = fields[0].strip(), fields[1]
    token, refused = await _sign_in(request, name, password)
    session = _ctx(request).sessions.get(token)
    if token is None or session is None:
        code = refused or "bad-login"
        return _api_error(pages.MESSAGES[code][1], 403 if code == "no-role" else 401)
    response = _json({"reviewer": name, "csrf": session.csrf})
    _set_session_cookie(response, request, token)
    return response


def review_json(review: CandidateReview, auth: Authorisation | None) -> dict[str, Any]:
    data = review.to_json()
    data["alert_id"] = review.alert_id if review.status == "confirmed" else None
    data["case_ref"] = auth.case_ref if auth else None
    data["purpose"] = auth.purpose if auth else None
    if review.pending:
        data["crop_url"] = f"/candidates/{review.candidate_id}/crop"
        data["enrolled_url"] = f"/candidates/{review.candidate_id}/enrolled"
    return data


@_for_reviewers()
async def _api_queue(request: web.Request, _who: SignedIn) -> web.Response:
    ctx = _ctx(request)
    auths = _auths(ctx)
    book = ctx.review.reviews()
    return _json(
        {
            "pending": [review_json(r, auths.get(r.authorisation_id)) for r in book.pending()],
            "closed": [review_json(r, auths.get(r.authorisation_id)) for r in book.closed()],
        }
    )


@_for_reviewers()
async def _api_candidate(request: web.Request, _who: SignedIn) -> web.Response:
    review = _review(request)
    return _json(review_json(review, _auths(_ctx(request)).get(review.authorisation_id)))


@_for_reviewers()
async def _api_decide(request: web.Request, who: SignedIn) -> web.Response:
    if not csrf_ok(who.session, request.headers.get("X-CSRF-Token")):
        return _api_error("missing or wrong X-CSRF-Token header", 403)
    cid = _review(request).candidate_id
    fields = await _json_fields(request, "decision")
    if fields is None:
        return _api_error('send JSON: {"decision": "confirm" | "reject"}', 400)
    status, code, detail = await _decide(request, who, cid, fields[0])
    return _json({"result": code, "detail": detail}, status)
