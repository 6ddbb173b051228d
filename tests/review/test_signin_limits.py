"""Sign-in limits and HSTS of the reviewers' web app, over real HTTP with concurrent clients.

The web app (build_web, with real scrypt accounts, sessions and roles) is served on loopback by
aiohttp in its own thread and event loop, as the service serves it; each client is a thread with
its own connection from its own loopback address (127.0.0.x), so "another client" is another
address. How many attempts reached the password hash is read from
facestream_review_signins_total: `failed` and `ok` count hashes that ran, `locked` attempts
refused before. The last test runs the `facestream review` process to show the flags are wired.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY

from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.roles import RoleStore, resolve_actor
from facestream.review.accounts import ReviewerAccounts
from facestream.review.limits import Attempt, SignInLimiter, SignInLimits
from facestream.review.sessions import Sessions
from facestream.review.settings import proxy_networks
from facestream.review.web import WebContext, WebPolicy, build_web
from facestream.settings import KafkaSettings
from facestream.transport.kafka import ensure_topics
from facestream.transport.topics import catalogue
from tests.fixtures.accountability import run_cli
from tests.fixtures.audit import make_key
from tests.integration.processes import services
from tests.review.world import PARTITIONS, add_account, environment, service_args, web_port

pytestmark = pytest.mark.slow  # real scrypt, and limits that wait for their window (about 19 s)

PASSWORD = "rita-review-password"
WRONG = [f"wrong guess number {i:03d}" for i in range(100)]
HSTS = "Strict-Transport-Security"


class NotUsed:
    """Stands where the review state and photos are: sign-in must never touch them."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"signing in reached {name}")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rita, a reviewer with an account (real scrypt hash, real roles.json)."""
    state = tmp_path_factory.mktemp("signin-state")
    roles = RoleStore(state)
    roles.grant("root", "olga", "operator")
    roles.grant("olga", "rita", "reviewer")
    ReviewerAccounts(state).add("rita", PASSWORD, by="olga")
    return state


def context(state: Path, policy: WebPolicy) -> WebContext:
    return WebContext(
        review=NotUsed(),  # type: ignore[arg-type]
        accounts=ReviewerAccounts(state),
        sessions=Sessions(idle_s=600, max_s=3600),
        role_of=lambda name: resolve_actor(state, "reviewer", name),
        authorisations=AuthorisationStore(state),
        photos=NotUsed(),  # type: ignore[arg-type]
        cookie_secure=True,
        policy=policy,
    )


@contextmanager
def serving(ctx: WebContext, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """The web app on 127.0.0.1 (any port), in its own thread and event loop; yields the port."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_web(ctx), access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the web app did not start"
    try:
        yield runner.addresses[0][1]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def call(
    port: int,
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    body: object = None,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """One request on its own connection from `source` (any 127.0.0.x: loopback answers them all)."""
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    else:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=60, source_address=(source, 0), context=tls
        )
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def login(
    port: int, name: str, password: str, source: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> Reply:
    return call(
        port, "POST", "/api/login", source=source, body={"name": name, "password": password}, headers=headers
    )


def burst(calls: list[Callable[[], Reply]]) -> list[Reply]:
    """All the calls at once: each on its own thread, released together."""
    barrier = threading.Barrier(len(calls))

    def go(one: Callable[[], Reply]) -> Reply:
        barrier.wait(60)
        return one()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def statuses(replies: list[Reply]) -> Counter[int]:
    return Counter(r.status for r in replies)


def signins(result: str) -> float:
    return REGISTRY.get_sample_value("facestream_review_signins_total", {"result": result}) or 0.0


@contextmanager
def counted() -> Iterator[dict[str, float]]:
    """facestream_review_signins_total{result} added inside the block (hashes run: failed and ok)."""
    before = {r: signins(r) for r in ("ok", "failed", "locked")}
    added: dict[str, float] = {}
    yield added
    added.update({r: signins(r) - before[r] for r in before})


def test_forty_concurrent_wrong_passwords_reach_the_hash_five_times_and_then_even_the_right_one_waits(
    state: Path,
) -> None:
    """The reported race: 41 concurrent attempts tested 10 passwords in one 5-attempt window. Now the
    attempt is counted before the hash, so 40 at once get 5 hashes (default figures)."""
    with serving(context(state, WebPolicy())) as port, counted() as added:
        replies = burst([lambda p=p: login(port, "rita", p, "127.0.0.2") for p in WRONG[:40]])  # type: ignore[misc]
        right_too_late = login(port, "rita", PASSWORD, "127.0.0.2")
        other_name = login(port, "rob", WRONG[50], "127.0.0.2")
    assert statuses(replies) == {401: 5, 429: 35}
    assert added == {"failed": 6, "ok": 0, "locked": 36}  # the right password was refused unhashed
    assert right_too_late.status == 429
    assert other_name.status == 401  # refusals are not counted: 36 of them left 15 of the client's 20
    for refused in [r for r in replies if r.status == 429] + [right_too_late]:
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
        assert json.loads(refused.body)["error"].startswith("Too many sign-in attempts")


def test_a_stranger_failing_again_and_again_cannot_keep_the_reviewer_out(state: Path) -> None:
    """The reported denial of service (5 anonymous failures locked rita out). Strangers on four
    addresses pass the account's ceiling of 8: the first gets its 5 guesses, the second only up to
    the ceiling, later ones one each; rita, on a client that has not failed, signs in."""
    policy = WebPolicy(limits=SignInLimits(per_account_client=5, per_client=20, per_account=8))
    hashed = []
    with serving(context(state, policy)) as port:
        for stranger in ("127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"):
            replies = burst([lambda p=p, s=stranger: login(port, "rita", p, s) for p in WRONG[:10]])  # type: ignore[misc]
            assert set(statuses(replies)) <= {401, 429}
            hashed.append(statuses(replies)[401])
        rita = login(port, "rita", PASSWORD, "127.0.0.20")
        sessions_page = call(port, "GET", "/login", source="127.0.0.20")
    assert hashed == [5, 3, 1, 1]
    assert rita.status == 200 and json.loads(rita.body)["reviewer"] == "rita"
    assert "fs_review=" in rita.headers["Set-Cookie"]
    assert sessions_page.status == 200


def test_spraying_sixty_names_from_one_client_is_stopped_after_its_allowance(state: Path) -> None:
    """The reported spray (60 names, none limited): one client gets 20 guesses, all names together."""
    names = ["rita", "rob", "olga", *(f"reviewer{i:02d}" for i in range(57))]
    with serving(context(state, WebPolicy())) as port, counted() as added:
        replies = burst([lambda n=n: login(port, n, WRONG[0], "127.0.0.30") for n in names])  # type: ignore[misc]
        rita_there = login(port, "rita", PASSWORD, "127.0.0.30")
        rita_elsewhere = login(port, "rita", PASSWORD, "127.0.0.31")
    assert statuses(replies) == {401: 20, 429: 40}
    assert added["failed"] == 20 and added["ok"] == 1
    assert rita_there.status == 429  # the spraying client is held back, whoever it claims to be
    assert rita_elsewhere.status == 200


def test_the_allowance_comes_back_as_its_attempts_age_out_and_waiting_is_never_counted(state: Path) -> None:
    """A sliding window, not a lock: after the burst is refused, the same client asking again and
    again gets in once the counted attempts are older than the window."""
    policy = WebPolicy(limits=SignInLimits(per_account_client=3, per_client=20, per_account=50, window_s=5.0))
    with serving(context(state, policy)) as port:
        replies = burst([lambda p=p: login(port, "rita", p, "127.0.0.40") for p in WRONG[:6]])  # type: ignore[misc]
        assert statuses(replies) == {401: 3, 429: 3}
        assert all(1 <= int(r.headers["Retry-After"]) <= 5 for r in replies if r.status == 429)
        tries: list[int] = []
        deadline = time.monotonic() + 60
        while not tries or tries[-1] != 200:
            assert time.monotonic() < deadline, f"the allowance never came back: {Counter(tries)}"
            tries.append(login(port, "rita", PASSWORD, "127.0.0.40").status)
            time.sleep(0.1)
        assert set(tries) <= {429, 200}


def test_the_sign_in_form_says_to_wait_and_when(state: Path) -> None:
    """A browser gets the same limits as the API: a 429 page with Retry-After, no hash run."""
    limits = SignInLimits(per_account_client=1, per_client=20, per_account=50)
    with serving(context(state, WebPolicy(limits=limits))) as port, counted() as added:
        assert login(port, "rita", WRONG[0], "127.0.0.45").status == 401
        form = call(port, "GET", "/login", source="127.0.0.45")
        cookie = form.headers["Set-Cookie"].split(";", 1)[0]
        token = re.search(rb'name="csrf" value="([^"]+)"', form.body)
        assert token is not None
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=("127.0.0.45", 0))
        fields = urllib.parse.urlencode(
            {"csrf": token.group(1).decode(), "name": "rita", "password": PASSWORD}
        )
        conn.request(
            "POST",
            "/login",
            body=fields,
            headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        page = conn.getresponse()
        body = page.read()
        conn.close()
    assert page.status == 429 and 1 <= int(page.headers["Retry-After"]) <= 300
    assert b"Too many sign-in attempts" in body and b"fs_review=" not in str(page.headers).encode()
    assert added["failed"] == 1 and added["ok"] == 0


def test_what_the_limits_remember_is_forgotten_after_the_window() -> None:
    """Memory stays bounded under a spray from many addresses: keys whose attempts all aged out go."""
    now = [0.0]
    limiter = SignInLimiter(SignInLimits(window_s=60.0), clock=lambda: now[0])
    for i in range(500):
        assert isinstance(limiter.attempt(f"name{i}", f"10.0.{i // 250}.{i % 250}"), Attempt)
    assert limiter.tracked() == 1500  # per name a pair and an account, and 500 clients
    now[0] = 61.0
    limiter.attempt("rita", "10.9.9.9")
    assert limiter.tracked() == 3


def test_x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sent_it(state: Path) -> None:
    """Unconfigured, the header is ignored (rotating it gains nothing); from a trusted proxy, the
    rightmost address it appended is the client, whatever the client wrote further left; an
    IPv6 client is its /64 (one host holds a whole /64)."""
    limits = SignInLimits(per_account_client=2, per_client=20, per_account=50)
    with serving(context(state, WebPolicy(limits=limits))) as port:
        rotating = [
            login(port, "rita", WRONG[i], "127.0.0.50", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status
            for i in range(4)
        ]
        assert rotating == [401, 401, 429, 429]

    trusted = WebPolicy(limits=limits, trusted_proxies=proxy_networks("127.0.0.1/32, ::1"))

    def via_proxy(forwarded: str, password: str, source: str = "127.0.0.1") -> int:
        return login(port, "rita", password, source, headers={"X-Forwarded-For": forwarded}).status

    with serving(context(state, trusted)) as port:
        assert [via_proxy("198.51.100.7", p) for p in WRONG[:3]] == [401, 401, 429]
        assert via_proxy("203.0.113.9, 198.51.100.7", PASSWORD) == 429  # a forged left part changes nothing
        assert via_proxy("198.51.100.8", PASSWORD) == 200  # another client behind the same proxy
        assert via_proxy("198.51.100.7, 127.0.0.1", PASSWORD) == 429  # a chain of trusted proxies is walked
        assert via_proxy("198.51.100.8", WRONG[5], source="127.0.0.51") == 401  # not a proxy: is the client
        assert via_proxy("198.51.100.8", WRONG[6], source="127.0.0.51") == 401
        assert via_proxy("198.51.100.9", PASSWORD, source="127.0.0.51") == 429
        assert [via_proxy("2001:db8:7:7::1", p) for p in WRONG[:2]] == [401, 401]
        assert via_proxy("2001:db8:7:7::2", PASSWORD) == 429  # the same /64
        assert via_proxy("[2001:db8:7:7::3]:443", PASSWORD) == 429  # a proxy that adds the port
        assert via_proxy("198.51.100.7:41234", PASSWORD) == 429
        assert via_proxy("2001:db8:7:8::1", PASSWORD) == 200  # the next /64


def self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the server's TLS context, a client context that trusts it) for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp / "cert.pem", tmp / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_pem, key_pem)
    client = ssl.create_default_context(cafile=str(cert_pem))
    return server, client


def test_strict_transport_security_is_sent_when_browsers_are_on_https_and_only_then(
    state: Path, tmp_path: Path
) -> None:
    with serving(context(state, WebPolicy())) as port:
        plain = call(port, "GET", "/login")
        forged = call(port, "GET", "/login", headers={"X-Forwarded-Proto": "https"})
    assert plain.status == 200 and HSTS not in plain.headers
    assert HSTS not in forged.headers  # nobody is trusted to say so

    limits = SignInLimits(per_account_client=1, per_client=20, per_account=50)
    with serving(context(state, WebPolicy(limits=limits, behind_tls=True))) as port:
        replies = [
            call(port, "GET", "/login"),
            call(port, "GET", "/"),  # a redirect to sign-in
            call(port, "GET", "/api/candidates"),  # 401
            login(port, "rita", WRONG[0]),  # 401 after the hash
            login(port, "rita", WRONG[1]),  # 429
        ]
    assert [r.status for r in replies] == [200, 303, 401, 401, 429]
    assert all(r.headers[HSTS] == "max-age=31536000" for r in replies)

    proxy = WebPolicy(trusted_proxies=proxy_networks("127.0.0.1"), hsts_max_age_s=86_400)
    with serving(context(state, proxy)) as port:
        proxied = call(port, "GET", "/login", headers={"X-Forwarded-Proto": "https"})
        proxied_http = call(port, "GET", "/login", headers={"X-Forwarded-Proto": "http"})
        not_the_proxy = call(
            port, "GET", "/login", source="127.0.0.60", headers={"X-Forwarded-Proto": "https"}
        )
    assert proxied.headers[HSTS] == "max-age=86400"
    assert HSTS not in proxied_http.headers and HSTS not in not_the_proxy.headers

    server_tls, client_tls = self_signed(tmp_path)
    with serving(context(state, WebPolicy()), server_tls) as port:
        over_tls = call(port, "GET", "/login", tls=client_tls)
    with serving(context(state, WebPolicy(hsts_max_age_s=0)), server_tls) as port:
        turned_off = call(port, "GET", "/login", tls=client_tls)
    assert over_tls.status == 200 and over_tls.headers[HSTS] == "max-age=31536000"
    assert turned_off.status == 200 and HSTS not in turned_off.headers


def test_a_trusted_proxy_setting_that_is_not_an_address_stops_the_service_at_start() -> None:
    started = run_cli("review", "--review-trusted-proxies", "10.0.0.0/8, proxy.internal")
    assert started.status == 2 and "proxy.internal" in started.stderr


def test_the_review_service_applies_the_sign_in_and_tls_flags(
    kafka_prefix: KafkaSettings, tmp_path: Path
) -> None:
    """The flags reach the web app of the real `facestream review` process."""
    key = make_key(tmp_path)
    with environment(key):
        ensure_topics(kafka_prefix, catalogue(kafka_prefix.topic_prefix, partitions=PARTITIONS))
        state = tmp_path / "state"
        for role, member, by in (("operator", "olga", "root"), ("reviewer", "rita", "olga")):
            granted = run_cli(
                "roles", "grant", "--gallery", str(state), "--role", role, member, "--actor", by
            )
            assert granted.status == 0, granted.stderr
        add_account(state, "rita", PASSWORD)
        with services(tmp_path) as running:
            proc = running.start(
                "review",
                *service_args(kafka_prefix, state, tmp_path / "faust"),
                "--review-signin-per-account-client", "2",
                "--review-signin-window-s", "600",
                "--review-trusted-proxies", "127.0.0.1/32",
                "--review-behind-tls",
            )  # fmt: skip
            proc.wait_ready(120)
            port = web_port(proc)

            def via(client: str, password: str) -> Reply:
                return login(port, "rita", password, headers={"X-Forwarded-For": client})

            replies = [via("198.51.100.7", p) for p in WRONG[:3]]
            elsewhere = via("198.51.100.8", PASSWORD)
            assert [r.status for r in replies] == [401, 401, 429]
            assert 1 <= int(replies[-1].headers["Retry-After"]) <= 600
            assert elsewhere.status == 200
            assert all(r.headers[HSTS] == "max-age=31536000" for r in [*replies, elsewhere])
            assert proc.metric("facestream_review_signins_total", {"result": "locked"}) == 1
            assert proc.metric("facestream_review_signins_total", {"result": "failed"}) == 2
            assert "198.51.100.7" in proc.log()  # the log names the client behind the proxy
            assert proc.terminate() == 0
