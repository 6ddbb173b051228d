"""Single sign-on end to end: headless Chromium signs in at a real OpenID Connect provider
(mock-oauth2-server's login page), through a real oauth2-proxy (authorization code + PKCE), to the
real `facestream review` process on the real broker, which believes the proxy's identity headers
only because the proxy's address is in --review-trusted-proxies.

Shown here: two SSO reviewers are two different reviewers (their confirmations make one alert, each
audited under their own SSO name); a person in no reviewers' group is refused, as is one in the group
without the reviewer role; the same headers sent straight to the app, not through the trusted proxy,
sign nobody in (not even with a reviewer's session cookie); password sign-in is off; and a client
cannot change who it is by sending the identity headers through the proxy itself.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facestream.settings import KafkaSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import run_cli
from tests.fixtures.audit import make_key
from tests.fixtures.browser import Browser
from tests.fixtures.kafka import delete_topics
from tests.fixtures.sso import GROUPS_HEADER, USER_HEADER, SsoChain, claims, provider_sign_in, sso_chain
from tests.integration.processes import ServiceProcess, services
from tests.review.world import World, build_world, environment, web_port

T0 = 1_795_200_000_000
GROUP = "facestream-reviewers"
ALICE, BOB, CAROL = "alice@city.example", "bob@city.example", "carol@city.example"
Open = Callable[[str, str], Browser]


@dataclass
class Running:
    world: World
    proc: ServiceProcess
    port: int
    """the review app itself (loopback), behind the proxy"""
    chain: SsoChain


@pytest.fixture(scope="module")
def review(
    kafka_broker: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
    faces_dir: Path,
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> Iterator[Running]:
    """The review service in SSO mode (trusting only 127.0.0.1, where oauth2-proxy connects from),
    with alice and bob granted the reviewer role by the operator, carol not."""
    root = tmp_path_factory.mktemp("review-sso")
    kafka = kafka_broker.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:12]}."})
    key = make_key(root)
    try:
        with environment(key), services(root) as running:
            world = build_world(root, kafka, faces_dir, finder, embedder.model_id, key)
            for member in (ALICE, BOB):
                granted = run_cli(
                    "roles",
                    "grant",
                    "--gallery",
                    str(world.state),
                    "--role",
                    "reviewer",
                    member,
                    "--actor",
                    "olga",
                )
                assert granted.status == 0, granted.stderr
            proc = world.start(
                running,
                "--review-trusted-proxies", "127.0.0.1/32",
                "--review-sso-user-header", USER_HEADER,
                "--review-sso-groups-header", GROUPS_HEADER,
                "--review-sso-reviewer-groups", f"{GROUP}, other-team",
            )  # fmt: skip
            port = web_port(proc)
            with sso_chain(port, root) as chain:
                yield Running(world, proc, port, chain)
            assert proc.terminate() == 0
    finally:
        delete_topics(kafka, kafka.topic_prefix)


def sign_in(b: Browser, email: str, groups: list[str]) -> None:
    """At the provider's login page, as the person would: their name and the claims it vouches for."""
    b.go("/")
    b.wait(lambda x: x.all("input[name=username]"), "the provider's login page")
    assert (
        "/default/authorize" in b.driver.current_url and "code_challenge_method=S256" in b.driver.current_url
    )
    b.find("input[name=username]").send_keys(email)
    b.find("textarea[name=claims]").send_keys(json.dumps(claims(email, groups)))
    b.click_and_wait("input[type=submit]", lambda x: x.driver.current_url.startswith(x.base), f"{email} back")


def wait_in_queue(b: Browser, candidate_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not b.all(f"#row-{candidate_id}"):
        assert time.monotonic() < deadline, f"candidate {candidate_id} never reached {b.who}'s queue"
        time.sleep(0.3)
        b.go("/")


def direct(
    port: int, method: str, path: str, headers: dict[str, str], body: str | None = None
) -> tuple[int, str]:
    """A request straight to the review app from 127.0.0.2: loopback, but not the trusted proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0))
    try:
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read().decode(errors="replace")
    finally:
        conn.close()


def test_two_sso_reviewers_confirm_and_each_is_audited_under_their_own_name(
    review: Running, browser: Open
) -> None:
    world = review.world
    cand = world.candidate("obama", "obama", "cam-north-1", T0)
    world.publish(cand)
    cid = cand.candidate_id

    alice = browser(review.chain.base, "alice")
    sign_in(alice, "Alice@City.example", [GROUP, "parks"])  # mail addresses are case-insensitive
    assert alice.path == "/" and f"Signed in as {ALICE}" in alice.text()
    assert not alice.all("#password")  # no password form anywhere on the way
    wait_in_queue(alice, cid)
    alice.shot("sso-01-queue")
    alice.go(f"/candidates/{cid}")
    alice.click_and_wait("#confirm", lambda b: "m=counted-confirm" in b.path, "alice's confirmation")
    assert "A different reviewer must confirm" in alice.text()

    # alice's own session cookie, sent straight to the app with her headers, is worth nothing there
    cookie = alice.driver.get_cookie("fs_review")
    assert cookie is not None
    forged = {USER_HEADER: ALICE, GROUPS_HEADER: GROUP, "Cookie": f"fs_review={cookie['value']}"}
    status, body = direct(review.port, "GET", "/api/candidates", forged)
    assert status == 401 and cid not in body
    status, body = direct(review.port, "GET", f"/candidates/{cid}", forged)
    assert status == 401 and "through your organisation" in body

    bob = browser(review.chain.base, "bob")
    sign_in(bob, BOB, ["other-team"])
    assert f"Signed in as {BOB}" in bob.text()
    bob.go(f"/candidates/{cid}")
    assert f"{ALICE} (1 of 2)" in bob.text()
    bob.click_and_wait("#confirm", lambda b: "m=confirmed" in b.path, "bob's confirmation")
    assert bob.find("#status").text == "Confirmed alert"
    bob.shot("sso-02-confirmed")

    [alert] = world.alerts(1)
    assert alert.candidate_id == cid and alert.confirmed_by == (ALICE, BOB)
    confirms = [r for r in world.actions("review.confirm") if r["objects"]["candidate_id"] == cid]
    assert [(r["actor"], r["role"]) for r in confirms] == [(ALICE, "reviewer"), (BOB, "reviewer")]


def test_people_outside_the_reviewers_groups_or_without_the_role_are_refused(
    review: Running, browser: Open
) -> None:
    mallory = browser(review.chain.base, "mallory")
    sign_in(mallory, "mallory@city.example", ["parks", "facestream-reviewers-old"])
    assert "403" in mallory.text() and "none of your groups may use the review app" in mallory.text()
    assert "Signed in as" not in mallory.text()
    mallory.shot("sso-03-no-group")
    mallory.go("/api/candidates")
    assert "none of your groups" in mallory.text()

    carol = browser(review.chain.base, "carol")
    sign_in(carol, CAROL, [GROUP])
    assert "does not hold the reviewer role" in carol.text()
    assert f"facestream roles grant --role reviewer {CAROL}" in carol.text()
    refused = "SSO sign-in of 'mallory@city.example' refused"
    assert refused in review.proc.log() and f"SSO sign-in of {CAROL} refused" in review.proc.log()
    assert review.proc.metric("facestream_review_signins_total", {"result": "sso_denied"}) >= 2


def test_identity_headers_count_only_from_the_trusted_proxy(review: Running) -> None:
    reviewer = {USER_HEADER: BOB, GROUPS_HEADER: GROUP}
    for method, path in (("GET", "/"), ("GET", "/api/candidates"), ("POST", "/api/login"), ("GET", "/login")):
        status, body = direct(review.port, method, path, reviewer, "{}" if method == "POST" else None)
        assert status == 401 and BOB not in body, (method, path, status)
    form = "name=rita&password=rita-review-password&csrf=x"
    status, body = direct(
        review.port, "POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, form
    )
    assert status == 403 and "Password sign-in is off" in body

    # through the proxy, a client's own copy of the headers is replaced by the signed-in person's
    opener = provider_sign_in(review.chain.base, ALICE, [GROUP])
    with opener.open(review.chain.base + "/api/login", data=b"{}", timeout=30) as reply:
        assert json.load(reply)["reviewer"] == ALICE
    import urllib.request

    sneaky = urllib.request.Request(review.chain.base + "/api/login", data=b"{}", headers=reviewer)
    with opener.open(sneaky, timeout=30) as reply:
        assert json.load(reply)["reviewer"] == ALICE
