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


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _deny(request: web.Request, status: int, text: str, viewer: pages.Viewer | None = None) -> web.Response:
    if _is_api(request):
        return _json({"error": text}, status)
    return _page(pages.error_page(status, text, viewer), status)


def _signed_in(request: web.Request) -> SignedIn | web.Response:
    """The signed-in reviewer, or the response to send instead (redirect, 401 or 403)."""
    ctx = _ctx(request)
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        if _is_api(request):
            return _json({"error": "sign in first (POST /api/login)"}, 401)
        raise web.HTTPSeeOther("/login")
    try:
        actor = ctx.role_of(session.reviewer)
    except (PermissionDenied, ConfigError) as exc:
        log.warning("review web: %s", exc)
        return _deny(request, 403, f"{session.reviewer} does not hold the reviewer role")
    return SignedIn(session, actor)


def _ready(request: web.Request) -> web.Response | None:
    if _ctx(request).review.ready:
        return None
    return _deny(request, 503, "The review service is starting (recovering its state); try again shortly.")


def _candidate_id(request: web.Request) -> str:
    cid = request.match_info["cid"]
    if not CANDIDATE_ID.match(cid):
        raise web.HTTPNotFound()
    return cid


def _review(request: web.Request, cid: str) -> CandidateReview:
    found = _ctx(request).review.reviews().get(cid)
    if found is None:
        raise web.HTTPNotFound()
    return found


def _auths(ctx: WebContext) -> Mapping[str, Authorisation]:
    try:
        return ctx.authorisations.all()
    except ConfigError as exc:
        log.error("review web: %s", exc)
        return {}


def _set_cookie(response: web.StreamResponse, ctx: WebContext, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, secure=ctx.cookie_secure, samesite="Strict"
    )


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
    token, submitted = request.cookies.get(LOGIN_COOKIE), form.get("csrf")
    if not token or not isinstance(submitted, str) or not secrets.compare_digest(token, submitted):
        return _login_page(request, "expired-form", status=400)
    name, password = form.get("name"), form.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        return _login_page(request, "bad-login", status=400)
    token, refused = await _sign_in(request, name.strip(), password)
    if token is None:
        status = 403 if refused == "no-role" else 401
        return _login_page(request, refused, name.strip()[:64], status)
    response = web.HTTPSeeOther("/")
    _set_cookie(response, _ctx(request), COOKIE, token, int(_ctx(request).sessions.max_s))
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
    ctx = _ctx(request)
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    form = await request.post()
    submitted = form.get("csrf")
    if session is not None and csrf_ok(session, submitted if isinstance(submitted, str) else None):
        ctx.sessions.end(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/login?m=signed-out")
    response.del_cookie(COOKIE, path="/")
    raise response


# -- pages ---------------------------------------------------------------------------------------


async def _queue(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    ctx = _ctx(request)
    book = ctx.review.reviews()
    return _page(
        pages.queue_page(who.viewer, book.pending(), book.closed(), _auths(ctx), now_ms(), book.confirmations)
    )


async def _candidate(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    ctx = _ctx(request)
    review = _review(request, _candidate_id(request))
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


async def _crop(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    review = _review(request, _candidate_id(request))
    crop = _ctx(request).review.crop_of(review.candidate_id) if review.pending else None
    if crop is None:
        raise web.HTTPNotFound()
    return web.Response(body=crop, content_type="image/jpeg")


async def _enrolled(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    review = _review(request, _candidate_id(request))
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


async def _decide_form(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    cid = _candidate_id(request)
    form = await request.post()
    submitted, verdict = form.get("csrf"), form.get("decision")
    if not csrf_ok(who.session, submitted if isinstance(submitted, str) else None):
        return _deny(request, 403, "The form is not from this session (CSRF check failed).", who.viewer)
    _review(request, cid)
    _, code, _ = await _decide(request, who, cid, verdict if isinstance(verdict, str) else "")
    raise web.HTTPSeeOther(f"/candidates/{cid}?m={code}")


# -- the JSON API ----------------------------------------------------------------------------------


async def _api_login(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _json({"error": 'send JSON: {"name": ..., "password": ...}'}, 415)
    try:
        body = await request.json()
        name, password = str(body["name"]).strip(), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return _json({"error": 'send JSON: {"name": ..., "password": ...}'}, 400)
    token, refused = await _sign_in(request, name, password)
    session = _ctx(request).sessions.get(token)
    if token is None or session is None:
        code = refused or "bad-login"
        return _json({"error": pages.MESSAGES[code][1]}, 403 if code == "no-role" else 401)
    response = _json({"reviewer": name, "csrf": session.csrf})
    _set_cookie(response, _ctx(request), COOKIE, token, int(_ctx(request).sessions.max_s))
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


async def _api_queue(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    ctx = _ctx(request)
    auths = _auths(ctx)
    book = ctx.review.reviews()
    return _json(
        {
            "pending": [review_json(r, auths.get(r.authorisation_id)) for r in book.pending()],
            "closed": [review_json(r, auths.get(r.authorisation_id)) for r in book.closed()],
        }
    )


async def _api_candidate(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    review = _review(request, _candidate_id(request))
    return _json(review_json(review, _auths(_ctx(request)).get(review.authorisation_id)))


async def _api_decide(request: web.Request) -> web.Response:
    who = _signed_in(request)
    if isinstance(who, web.Response):
        return who
    busy = _ready(request)
    if busy is not None:
        return busy
    if not csrf_ok(who.session, request.headers.get("X-CSRF-Token")):
        return _json({"error": "missing or wrong X-CSRF-Token header"}, 403)
    cid = _candidate_id(request)
    _review(request, cid)
    try:
        body = await request.json()
        verdict = str(body["decision"])
    except (ValueError, KeyError, TypeError):
        return _json({"error": 'send JSON: {"decision": "confirm" | "reject"}'}, 400)
    status, code, detail = await _decide(request, who, cid, verdict)
    return _json({"result": code, "detail": detail}, status)
