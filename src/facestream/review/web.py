"""The reviewers' web app (aiohttp, on the review service's event loop).

Pages: sign-in, the queue of pending candidates, a candidate (its face crop beside the
enrolled photo, score, camera, time, authorisation and case) with confirm / reject. A JSON
API offers the same to programs. Every route but sign-in and the style sheet needs a
signed-in reviewer: pages redirect to /login, the API answers 401. The reviewer role is
checked on every request (roles.json), so withdrawing it takes effect at once.

Sessions: random tokens in an HttpOnly, SameSite=Strict cookie (Secure unless configured
off); a per-session CSRF token on every POST (form field, or the X-CSRF-Token header for the
API); the sign-in form has its own double-submit token. Responses are never cached
(`Cache-Control: no-store`) and carry a strict Content-Security-Policy (and
Strict-Transport-Security when browsers reach the app over HTTPS); images are served only to
signed-in reviewers and only while the candidate is pending.

Sign-in attempts are limited per (account, client), per client and per account (limits.py),
each attempt counted before its password hash runs. The client is the connection's address,
or, only when the connection comes from a configured trusted proxy, the address that proxy
put in X-Forwarded-For (IPv6 clients are grouped by /64: one host holds a whole /64).

Single sign-on (--review-sso-user-header, sso.py): a sign-in proxy (oauth2-proxy) in front names
the person and their groups in headers, believed only on a connection from a trusted proxy. Each
such request is checked afresh (a person dropped from the reviewers' groups is refused at once);
a session is started the first time, for the per-session CSRF token, and replaced when the proxy
names someone else. Password sign-in is off then: a request not through the proxy is nobody.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal

from aiohttp import web

from facestream.accountability.audit import Actor
from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.errors import ConfigError, PermissionDenied
from facestream.review import pages
from facestream.review.accounts import ReviewerAccounts
from facestream.review.app import ReviewApp, RoleCheck
from facestream.review.decisions import CandidateReview, DecisionRefused
from facestream.review.limits import Refused, SignInLimiter, SignInLimits
from facestream.review.messages import CANDIDATE_ID, VERDICTS, Decision, Verdict
from facestream.review.photos import EnrolledPhotos
from facestream.review.sessions import Session, Sessions, csrf_ok
from facestream.review.settings import ReviewSettings, proxy_networks
from facestream.review.sso import SsoConfig, SsoPerson, SsoRefusal
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
Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class WebPolicy:
    """Who a client is, how often it may try to sign in, and whether browsers must keep to HTTPS."""

    limits: SignInLimits = field(default_factory=SignInLimits)
    trusted_proxies: tuple[Network, ...] = ()
    """Only a connection from these may say who the client is (X-Forwarded-For) and that it used TLS."""
    behind_tls: bool = False
    hsts_max_age_s: int = 31_536_000
    sso: SsoConfig | None = None
    """Sign-in through a trusted proxy's headers instead of passwords (None: passwords)."""

    @classmethod
    def from_settings(cls, review: ReviewSettings) -> WebPolicy:
        return cls(
            limits=SignInLimits(
                per_account_client=review.review_signin_per_account_client,
                per_client=review.review_signin_per_client,
                per_account=review.review_signin_per_account,
                window_s=review.review_signin_window_s,
            ),
            trusted_proxies=proxy_networks(review.review_trusted_proxies),
            behind_tls=review.review_behind_tls,
            hsts_max_age_s=review.review_hsts_max_age_s,
            sso=SsoConfig.from_settings(review),
        )


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
    policy: WebPolicy = field(default_factory=WebPolicy)


@dataclass(frozen=True, slots=True)
class SignedIn:
    session: Session
    actor: Actor

    @property
    def viewer(self) -> pages.Viewer:
        return pages.Viewer(self.actor.name, self.actor.role, self.session.csrf)


CTX = web.AppKey("ctx", WebContext)
LIMITER = web.AppKey("limiter", SignInLimiter)
NEW_SESSION = web.RequestKey("new_session", str)
"""The cookie token of a session an SSO request started; the middleware sets the cookie."""


def build_web(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[_headers], client_max_size=64 * 1024)
    app[CTX] = ctx
    app[LIMITER] = SignInLimiter(ctx.policy.limits)
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
    headers = dict(SECURITY_HEADERS)
    policy = _ctx(request).policy
    if policy.hsts_max_age_s > 0 and _over_tls(request, policy):
        headers["Strict-Transport-Security"] = f"max-age={policy.hsts_max_age_s}"
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and refusals carry the headers too
        for name, value in headers.items():
            exc.headers.setdefault(name, value)
        if NEW_SESSION in request:
            _set_session_cookie(exc, request, request[NEW_SESSION])
        raise
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    if NEW_SESSION in request and not response.prepared:
        _set_session_cookie(response, request, request[NEW_SESSION])
    return response


# -- who the client is -----------------------------------------------------------------------

_warned_untrusted_forward: list[str] = []


def _address(text: str | None) -> IPv4Address | IPv6Address | None:
    """An address as a peer or a proxy writes it; some proxies add a port (1.2.3.4:5, [::1]:5)."""
    text = (text or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address | None, policy: WebPolicy) -> bool:
    return address is not None and any(address in net for net in policy.trusted_proxies)


def _forwarded(request: web.Request, name: str) -> list[str]:
    """Every comma-separated value of a header, over all its occurrences, left to right."""
    return [part.strip() for value in request.headers.getall(name, []) for part in value.split(",")]


def client_address(request: web.Request, policy: WebPolicy) -> IPv4Address | IPv6Address | None:
    """The connection's address; when that is a trusted proxy, the first address walking X-Forwarded-For
    from the right (the end the proxies append to) that is not a trusted proxy itself. Whatever a
    client writes further left is never read; without trusted proxies the header is ignored."""
    address = _address(request.remote)  # the transport's peer: aiohttp reads no header for this
    if not _trusted(address, policy):
        if "X-Forwarded-For" in request.headers and not _warned_untrusted_forward:
            _warned_untrusted_forward.append(str(address))
            log.warning(
                "review web: X-Forwarded-For from %s ignored (not a trusted proxy); if a proxy of yours "
                "sends it, list it in --review-trusted-proxies, or all its clients share one sign-in "
                "allowance",
                address,
            )
        return address
    for hop in reversed(_forwarded(request, "X-Forwarded-For")):
        forwarded = _address(hop)
        if forwarded is None:  # not written by a proxy: keep the last hop we could vouch for
            return address
        address = forwarded
        if not _trusted(address, policy):
            return address
    return address


def client_key(request: web.Request, policy: WebPolicy) -> str:
    """What sign-in limits count by: an IPv4 address, or the /64 of an IPv6 one."""
    address = client_address(request, policy)
    if address is None:
        return f"peer:{request.remote or 'unknown'}"[:80]
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return str(address)


def _over_tls(request: web.Request, policy: WebPolicy) -> bool:
    """Whether the browser is on HTTPS: configured so, TLS on this connection, or a trusted proxy says so."""
    if policy.behind_tls or request.secure:
        return True
    proto = _forwarded(request, "X-Forwarded-Proto")
    return bool(proto) and proto[-1].lower() == "https" and _trusted(_address(request.remote), policy)


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
    if _ctx(request).policy.sso is not None:
        return _sso_signed_in(request)
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


# -- single sign-on through a trusted proxy ---------------------------------------------------------

_warned_untrusted_sso: list[str] = []
SSO_NOBODY = "Not signed in: open the review app through your organisation's sign-in."


def sso_person(request: web.Request, policy: WebPolicy) -> SsoPerson | SsoRefusal | None:
    """Who the sign-in proxy says this is; None when SSO is off, when the connection is not from a
    trusted proxy (whatever headers it sent are never read), or when the proxy names nobody."""
    sso = policy.sso
    if sso is None:
        return None
    peer = _address(request.remote)
    if not _trusted(peer, policy):
        if sso.user_header in request.headers and not _warned_untrusted_sso:
            _warned_untrusted_sso.append(str(peer))
            log.warning(
                "review web: %s from %s ignored (not a trusted proxy): nobody is signed in by it",
                sso.user_header, peer,
            )  # fmt: skip
        return None
    return sso.person(request.headers.get(sso.user_header), request.headers.getall(sso.groups_header, []))


def _sso_signed_in(request: web.Request) -> SignedIn | web.Response:
    """The reviewer the trusted proxy names, on every request; their session (for the CSRF token) is
    started on the first request, and replaced when the proxy names someone else on that cookie."""
    ctx = _ctx(request)
    person = sso_person(request, ctx.policy)
    if person is None:
        return _deny(request, 401, SSO_NOBODY)
    if isinstance(person, SsoRefusal):
        metrics.REVIEW_SIGNINS.labels("sso_denied").inc()
        log.warning("review web: SSO sign-in of %r refused: %s", person.name, person.reason)
        return _deny(request, 403, f"{person.name}: {person.reason}.")
    try:
        actor = ctx.role_of(person.name)
    except (PermissionDenied, ConfigError) as exc:
        metrics.REVIEW_SIGNINS.labels("sso_denied").inc()
        log.warning("review web: SSO sign-in of %s refused: %s", person.name, exc)
        return _deny(
            request,
            403,
            f"{person.name} is in a reviewers' group but does not hold the reviewer role here; an operator "
            f"grants it with: facestream roles grant --role reviewer {person.name}",
        )
    session = _session(request)
    if session is None or session.reviewer != person.name:
        ctx.sessions.end(request.cookies.get(COOKIE))
        token, session = ctx.sessions.start(person.name)
        request[NEW_SESSION] = token
        metrics.REVIEW_SIGNINS.labels("ok").inc()
        log.info(
            "review web: %s signed in through SSO (proxy %s, client %s)",
            person.name, request.remote, client_key(request, ctx.policy),
        )  # fmt: skip
    return SignedIn(session, actor)


# -- sign-in -----------------------------------------------------------------------------------


async def _css(_request: web.Request) -> web.Response:
    return web.Response(text=pages.css(), content_type="text/css", headers={"Cache-Control": "max-age=3600"})


async def _login_form(request: web.Request) -> web.Response:
    if _ctx(request).policy.sso is not None:  # no password form: whoever the proxy names goes on
        who = _sso_signed_in(request)
        if isinstance(who, web.Response):
            return who
        raise web.HTTPSeeOther("/")
    return _login_page(request, request.query.get("m"))


PASSWORDS_OFF = "Password sign-in is off: this review app signs reviewers in through single sign-on."


def _login_page(request: web.Request, message: str | None, name: str = "", status: int = 200) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = _page(pages.login_page(token, message, name), status)
    _set_cookie(response, _ctx(request), LOGIN_COOKIE, token, 900)
    return response


@dataclass(frozen=True, slots=True)
class SignInResult:
    token: str | None
    """a new session's cookie token, when signed in"""
    refused: str | None = None
    """why not: bad-login, locked (too many attempts) or no-role"""
    limited: Refused | None = None

    @property
    def status(self) -> int:
        return {"no-role": 403, "locked": 429}.get(self.refused or "", 401)

    def answer(self, response: web.Response) -> web.Response:
        if self.limited is not None:
            response.headers["Retry-After"] = self.limited.retry_after_header
        return response


async def _login(request: web.Request) -> web.Response:
    if _ctx(request).policy.sso is not None:
        return _deny(request, 403, PASSWORDS_OFF)
    form = await request.post()
    token, submitted = request.cookies.get(LOGIN_COOKIE), _form_text(form, "csrf")
    if not token or submitted is None or not secrets.compare_digest(token, submitted):
        return _login_page(request, "expired-form", status=400)
    name, password = _form_text(form, "name"), _form_text(form, "password")
    if name is None or password is None:
        return _login_page(request, "bad-login", status=400)
    result = await _sign_in(request, name.strip(), password)
    if result.token is None:
        return result.answer(_login_page(request, result.refused, name.strip()[:64], result.status))
    response = web.HTTPSeeOther("/")
    _set_session_cookie(response, request, result.token)
    response.del_cookie(LOGIN_COOKIE, path="/")
    raise response


async def _sign_in(request: web.Request, name: str, password: str) -> SignInResult:
    """Check the limits and count the attempt (one step, before any await: concurrent attempts cannot
    all pass), then run the password hash; a right password is forgiven its count. `failed` and
    `ok` in facestream_review_signins_total are hashes that ran; `locked`, attempts refused before."""
    ctx = _ctx(request)
    client = client_key(request, ctx.policy)
    attempt = request.app[LIMITER].attempt(name, client)
    if isinstance(attempt, Refused):
        metrics.REVIEW_SIGNINS.labels("locked").inc()
        log.warning(
            "review web: sign-in for %r from %s refused (%s limit; again in %.0f s)",
            name[:64], client, attempt.reason, attempt.retry_after_s,
        )  # fmt: skip
        return SignInResult(None, "locked", attempt)
    ok = await asyncio.to_thread(ctx.accounts.verify, name, password)  # scrypt: off the loop
    if not ok:
        metrics.REVIEW_SIGNINS.labels("failed").inc()
        log.warning("review web: failed sign-in for %r from %s", name[:64], client)
        return SignInResult(None, "bad-login")
    request.app[LIMITER].forgive(attempt)
    try:
        ctx.role_of(name)
    except (PermissionDenied, ConfigError):
        metrics.REVIEW_SIGNINS.labels("failed").inc()
        return SignInResult(None, "no-role")
    token, _ = ctx.sessions.start(name)
    metrics.REVIEW_SIGNINS.labels("ok").inc()
    log.info("review web: %s signed in from %s", name, client)
    return SignInResult(token)


async def _logout(request: web.Request) -> web.Response:
    session = _session(request)
    form = await request.post()
    if session is not None and csrf_ok(session, _form_text(form, "csrf")):
        _ctx(request).sessions.end(request.cookies.get(COOKIE))
    sso = _ctx(request).policy.sso
    response = web.HTTPSeeOther("/login?m=signed-out" if sso is None else sso.logout_url)
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
    if _ctx(request).policy.sso is not None:  # the proxy's person, with this session's CSRF token
        who = _sso_signed_in(request)
        if isinstance(who, web.Response):
            return who
        return _json({"reviewer": who.actor.name, "csrf": who.session.csrf})
    if request.content_type != "application/json":
        return _api_error(LOGIN_JSON, 415)
    fields = await _json_fields(request, "name", "password")
    if fields is None:
        return _api_error(LOGIN_JSON, 400)
    name, password = fields[0].strip(), fields[1]
    result = await _sign_in(request, name, password)
    session = _ctx(request).sessions.get(result.token)
    if result.token is None or session is None:
        return result.answer(_api_error(pages.MESSAGES[result.refused or "bad-login"][1], result.status))
    response = _json({"reviewer": name, "csrf": session.csrf})
    _set_session_cookie(response, request, result.token)
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
