"""Every route of the reviewers' web app, enumerated from its router, refuses a request that is not
from a signed-in reviewer: no cookie, a forged cookie, the cookie of a session that ended. Only
sign-in, sign-out and the style sheet are public. A route added later is covered automatically.

(tests/review/test_review_browser.py shows the same for a few pages in a real browser against the
running service, with roles; this one goes through all of them.) The review state is a tripwire:
a request that reaches it before being refused fails the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from facestream.accountability.audit import Actor
from facestream.accountability.authorisations import AuthorisationStore
from facestream.review.accounts import ReviewerAccounts
from facestream.review.sessions import Sessions
from facestream.review.web import COOKIE, WebContext, build_web

PUBLIC = {
    ("GET", "/static/review.css"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/api/login"),
}
CANDIDATE = "0123456789abcdef01234567"


class Tripwire:
    """Stands where the review state and the enrolled photos are: touching it fails the test."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"a request that is not signed in reached {name}")


def reviewer(name: str) -> Actor:
    return Actor(name, "reviewer")


def routes(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method != "HEAD":
            out.append((route.method, path.replace("{cid}", CANDIDATE)))
    return sorted(set(out))


async def answers(app: web.Application, cookie: str | None) -> dict[tuple[str, str], tuple[int, str, bytes]]:
    out = {}
    async with TestClient(TestServer(app)) as client:
        for method, path in routes(app):
            headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
            kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
            if method == "POST":
                kwargs["data"] = {"decision": "confirm", "csrf": "x"}
            async with client.request(method, path, **kwargs) as response:
                out[(method, path)] = (
                    response.status,
                    response.headers.get("Location", ""),
                    await response.read(),
                )
    return out


def test_every_route_but_sign_in_refuses_anyone_not_signed_in(tmp_path: Path) -> None:
    sessions = Sessions(idle_s=600, max_s=3600)
    ended, _ = sessions.start("rita")
    sessions.end(ended)
    ctx = WebContext(
        review=Tripwire(),  # type: ignore[arg-type]
        accounts=ReviewerAccounts(tmp_path),
        sessions=sessions,
        role_of=reviewer,
        authorisations=AuthorisationStore(tmp_path),
        photos=Tripwire(),  # type: ignore[arg-type]
        cookie_secure=True,
    )
    app = build_web(ctx)
    found = set(routes(app))
    assert found > PUBLIC and len(found - PUBLIC) >= 8, found  # the router was read

    for cookie in (None, "forged-token-" + "A" * 32, ended):
        for (method, path), (status, location, body) in asyncio.run(answers(build_web(ctx), cookie)).items():
            if (method, path) in PUBLIC:
                continue
            if path.startswith("/api/"):
                assert status == 401, (method, path, status, cookie)
            else:
                assert (status, location) == (303, "/login"), (method, path, status, cookie)
            assert not body.startswith(b"\xff\xd8"), (method, path)  # no image leaks with a refusal
