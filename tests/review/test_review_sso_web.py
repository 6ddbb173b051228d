"""SSO in the web app without a broker (the chain end to end is test_review_sso_browser.py): the service
refuses to start with SSO and no trusted proxy, and on a real aiohttp server the proxy's headers sign
people in only from a trusted address, one session per person, replaced when the proxy names someone
else on the same cookie."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from facestream.accountability.audit import Actor
from facestream.accountability.authorisations import AuthorisationStore
from facestream.cliargs import settings_from
from facestream.errors import ConfigError, PermissionDenied
from facestream.review.accounts import ReviewerAccounts
from facestream.review.sessions import Sessions
from facestream.review.settings import ReviewSettings
from facestream.review.web import COOKIE, WebContext, WebPolicy, build_web

SSO = {
    "review_sso_user_header": "X-Auth-Request-Email",
    "review_sso_groups_header": "X-Auth-Request-Groups",
    "review_sso_reviewer_groups": "reviewers",
}


def test_sso_without_a_trusted_proxy_refuses_to_start_with_one_line() -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from(argparse.Namespace(**SSO), ReviewSettings)
    text = str(refused.value)
    assert text.startswith("--review-sso-user-header: ") and "needs --review-trusted-proxies" in text
    assert "\n" not in text
    with pytest.raises(ConfigError, match="no reviewers' group"):
        settings_from(
            argparse.Namespace(
                **{**SSO, "review_sso_reviewer_groups": " , ", "review_trusted_proxies": "10.0.0.1"}
            ),
            ReviewSettings,
        )
    on = settings_from(argparse.Namespace(**SSO, review_trusted_proxies="127.0.0.1"), ReviewSettings)
    assert WebPolicy.from_settings(on).sso is not None
    assert WebPolicy.from_settings(ReviewSettings()).sso is None  # off by default: passwords


def only_reviewers(name: str) -> Actor:
    if name in {"alice@city.example", "bob@city.example"}:
        return Actor(name, "reviewer")
    raise PermissionDenied(f"{name} does not hold the role reviewer")


def app_for(tmp_path: Path, trusted: str) -> tuple[WebContext, Sessions]:
    review = ReviewSettings(**SSO, review_trusted_proxies=trusted)  # type: ignore[arg-type]
    sessions = Sessions(idle_s=600, max_s=3600)
    ctx = WebContext(
        review=None,  # type: ignore[arg-type]  # /api/login never reaches the review state
        accounts=ReviewerAccounts(tmp_path),
        sessions=sessions,
        role_of=only_reviewers,
        authorisations=AuthorisationStore(tmp_path),
        photos=None,  # type: ignore[arg-type]
        cookie_secure=True,
        policy=WebPolicy.from_settings(review),
    )
    return ctx, sessions


def headers(user: str, groups: str = "staff, reviewers") -> dict[str, str]:
    return {"X-Auth-Request-Email": user, "X-Auth-Request-Groups": groups}


async def login(client: TestClient[Any, Any], sent: dict[str, str]) -> tuple[int, dict[str, str], str | None]:
    async with client.post("/api/login", headers=sent, json={}) as reply:
        body = await reply.json()
        cookie = reply.cookies.get(COOKIE)
        return reply.status, body, cookie.value if cookie else None


def test_a_trusted_proxy_signs_in_distinct_stable_people(tmp_path: Path) -> None:
    ctx, sessions = app_for(tmp_path, "127.0.0.1/32")

    async def run() -> None:
        async with TestClient(TestServer(build_web(ctx), host="127.0.0.1")) as client:
            status, alice, cookie = await login(client, headers("Alice@City.Example"))
            assert status == 200 and alice["reviewer"] == "alice@city.example" and cookie
            again = await login(client, {**headers("alice@city.example"), "Cookie": f"{COOKIE}={cookie}"})
            assert again[:2] == (200, alice) and again[2] is None  # same person, same session and token
            status, bob, bob_cookie = await login(
                client, {**headers("bob@city.example"), "Cookie": f"{COOKIE}={cookie}"}
            )
            assert status == 200 and bob["reviewer"] == "bob@city.example" and bob["csrf"] != alice["csrf"]
            assert (
                bob_cookie and bob_cookie != cookie and sessions.get(cookie) is None
            )  # alice's cookie ended
            status, body, _ = await login(client, headers("mallory@city.example", "staff"))
            assert status == 403 and body["error"].startswith(
                "mallory@city.example: you are signed in, but none"
            )
            status, body, _ = await login(client, headers("carol@city.example"))
            assert status == 403 and "does not hold the reviewer role" in body["error"]
            status, body, _ = await login(client, headers("eve+x@city.example"))
            assert status == 403 and "not an account name" in body["error"]
            assert (await login(client, {"X-Auth-Request-Groups": "reviewers"}))[0] == 401

    asyncio.run(run())


def test_headers_from_an_untrusted_address_sign_nobody_in(tmp_path: Path) -> None:
    ctx, _ = app_for(tmp_path, "10.0.0.0/8")  # the test client connects from 127.0.0.1

    async def run() -> None:
        async with TestClient(TestServer(build_web(ctx), host="127.0.0.1")) as client:
            status, body, cookie = await login(client, headers("alice@city.example"))
            assert status == 401 and cookie is None and "alice" not in str(body)
            async with client.get("/", headers=headers("alice@city.example"), allow_redirects=False) as page:
                assert page.status == 401 and "alice" not in await page.text()
            async with client.post("/login", data={"name": "alice", "password": "x", "csrf": "x"}) as form:
                assert form.status == 403 and "Password sign-in is off" in await form.text()

    asyncio.run(run())
