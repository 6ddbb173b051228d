"""The review page end to end in headless Chromium, against the real `facestream review` process on
the real broker: two reviewers confirm (one alert), a reviewer rejects (none), and whoever is not
signed in, or is not a reviewer, sees nothing. Screenshots are saved for a person to look at."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from facestream.review.messages import alert_id_for
from facestream.settings import KafkaSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import run_cli
from tests.fixtures.audit import make_key
from tests.fixtures.browser import Browser
from tests.fixtures.kafka import delete_topics
from tests.integration.processes import ServiceProcess, services
from tests.review.world import PASSWORDS, Client, World, add_account, build_world, environment, web_port

T0 = 1_795_100_000_000
Open = Callable[[str, str], Browser]


@dataclass
class Running:
    world: World
    proc: ServiceProcess
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def review(
    kafka_broker: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
    faces_dir: Path,
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> Iterator[Running]:
    """One review service for the module, with the production cookie settings (Secure, HttpOnly)."""
    root = tmp_path_factory.mktemp("review-web")
    kafka = kafka_broker.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:12]}."})
    key = make_key(root)
    try:
        with environment(key), services(root) as running:
            world = build_world(root, kafka, faces_dir, finder, embedder.model_id, key)
            proc = world.start(running)
            yield Running(world, proc, web_port(proc))
            assert proc.terminate() == 0
    finally:
        delete_topics(kafka, kafka.topic_prefix)


def wait_pending(running: Running, candidate_id: str, timeout_s: float = 30) -> None:
    client = Client(running.port)
    assert client.login("rita").status == 200
    deadline = time.monotonic() + timeout_s
    while client.request("GET", f"/api/candidates/{candidate_id}").status != 200:
        assert time.monotonic() < deadline, f"candidate {candidate_id} never arrived"
        time.sleep(0.2)


def test_two_reviewers_confirm_in_the_browser_and_exactly_one_alert_is_published(
    review: Running, browser: Open
) -> None:
    world = review.world
    cand = world.candidate("obama", "obama", "cam-north-1", T0)
    world.publish(cand)
    wait_pending(review, cand.candidate_id)
    row = f"#row-{cand.candidate_id}"

    rita = browser(review.base, "rita")
    rita.go("/")
    assert rita.path == "/login" and rita.all("#password")  # not signed in: the sign-in page, nothing else
    rita.shot("01-sign-in")
    rita.sign_in("rita", PASSWORDS["rita"])
    assert rita.path == "/" and "Signed in as rita" in rita.text()
    rita.wait(lambda b: b.all(row), "the candidate in the queue")
    assert "0 of 2" in rita.find(row).text and "CASE-2026-0042" in rita.find(row).text
    rita.wait(lambda b: b.image_loaded(f"{row} img.thumb"), "the queue thumbnail")
    rita.shot("02-queue")

    rita.click_and_wait(f"{row} a.button", lambda b: b.all("#confirm"), "the candidate page")
    rita.wait(lambda b: b.image_loaded("#crop") and b.image_loaded("#enrolled"), "both faces")
    page = rita.text()
    for fact in (
        "obama",
        "cam-north-1",
        "CASE-2026-0042",
        world.authorisation,
        "0.710",
        "Waiting for review",
    ):
        assert fact in page, fact
    rita.shot("03-candidate")
    rita.click_and_wait("#confirm", lambda b: "m=counted-confirm" in b.path, "rita's confirmation")
    assert "A different reviewer must confirm" in rita.text()
    assert not rita.all("#confirm") and rita.all("#reject")  # she cannot confirm twice
    assert "Waiting for review" in rita.find("#status").text
    rita.shot("04-after-first-confirmation")
    assert world.alerts(0, timeout_s=1) == []

    rob = browser(review.base, "rob")
    rob.sign_in("rob", PASSWORDS["rob"])
    rob.go(f"/candidates/{cand.candidate_id}")
    assert "rita (1 of 2)" in rob.text()
    rob.click_and_wait("#confirm", lambda b: "m=confirmed" in b.path, "rob's confirmation")
    assert rob.find("#status").text == "Confirmed alert"
    assert rob.find("#alert-id").text == alert_id_for(cand.candidate_id)
    assert not rob.all("#crop") and not rob.all("#confirm")  # review over: crop purged, no buttons
    rob.shot("05-confirmed-alert")
    rob.go("/")
    assert not rob.all(row) and "Confirmed alert" in rob.find(f"#closed-{cand.candidate_id}").text
    rob.shot("06-queue-after-decision")
    rob.go(f"/candidates/{cand.candidate_id}/crop")
    assert "404" in rob.text() or "Not Found" in rob.text()

    [alert] = world.alerts(1)
    assert alert.candidate_id == cand.candidate_id and alert.confirmed_by == ("rita", "rob")
    confirms = [
        r for r in world.actions("review.confirm") if r["objects"]["candidate_id"] == cand.candidate_id
    ]
    assert [(r["actor"], r["role"]) for r in confirms] == [("rita", "reviewer"), ("rob", "reviewer")]


def test_a_reviewer_rejects_in_the_browser_and_no_alert_follows(review: Running, browser: Open) -> None:
    world = review.world
    cand = world.candidate("obama", "kit_harington_unenrolled", "cam-south-2", T0 + 5000, score=0.43)
    world.publish(cand)
    wait_pending(review, cand.candidate_id)
    rob = browser(review.base, "rob")
    rob.sign_in("rob", PASSWORDS["rob"])
    rob.go(f"/candidates/{cand.candidate_id}")
    rob.wait(lambda b: b.image_loaded("#crop") and b.image_loaded("#enrolled"), "both faces")
    rob.shot("07-candidate-to-reject")
    rob.click_and_wait("#reject", lambda b: "m=counted-reject" in b.path, "rob's rejection")
    assert rob.find("#status").text == "Rejected" and "Rejected by\nrob" in rob.text().replace(
        " rob", "\nrob"
    )
    assert not rob.all("#confirm") and not rob.all("#reject")
    rob.shot("08-rejected")

    rita = browser(review.base, "rita")
    rita.sign_in("rita", PASSWORDS["rita"])
    rita.go(f"/candidates/{cand.candidate_id}")
    assert not rita.all("#confirm")  # closed for everyone
    [reject] = [
        r for r in world.actions("review.reject") if r["objects"]["candidate_id"] == cand.candidate_id
    ]
    assert (reject["actor"], reject["role"]) == ("rob", "reviewer")
    assert cand.candidate_id not in {a.candidate_id for a in world.alerts(0, timeout_s=2)}


def test_nothing_is_shown_or_decided_without_a_signed_in_reviewer(review: Running, browser: Open) -> None:
    world = review.world
    cand = world.candidate("obama", "obama", "cam-west-3", T0 + 9000)
    world.publish(cand)
    wait_pending(review, cand.candidate_id)
    cid = cand.candidate_id

    stranger = browser(review.base, "stranger")
    for path in ("/", f"/candidates/{cid}", f"/candidates/{cid}/crop", f"/candidates/{cid}/enrolled"):
        stranger.go(path)
        assert stranger.path == "/login", path
    stranger.go("/api/candidates")
    assert "sign in first" in stranger.text()
    stranger.go("/login")
    stranger.find("#name").send_keys("rita")
    stranger.find("#password").send_keys("not her password")
    stranger.click_and_wait("#sign-in", lambda b: b.all(".notice.error"), "the refusal")
    assert "Wrong account name or password" in stranger.text() and stranger.path == "/login"
    stranger.shot("09-wrong-password")
    oscar = browser(review.base, "oscar")
    oscar.go("/login")
    oscar.find("#name").send_keys("oscar")
    oscar.find("#password").send_keys(PASSWORDS["oscar"])
    oscar.click_and_wait("#sign-in", lambda b: b.all(".notice.error"), "the refusal")
    assert "does not hold the reviewer role" in oscar.text()
    oscar.shot("10-no-reviewer-role")
    oscar.go("/")
    assert oscar.path == "/login"  # no session was made

    anonymous = Client(review.port)
    assert anonymous.request("GET", "/api/candidates").status == 401
    assert anonymous.request("GET", f"/api/candidates/{cid}").status == 401
    assert anonymous.decide(cid, "confirm", csrf=None).status == 401
    page = anonymous.request("GET", f"/candidates/{cid}/enrolled")
    assert (
        page.status == 303 and page.headers["Location"] == "/login" and not page.body.startswith(b"\xff\xd8")
    )
    assert anonymous.login("oscar").status == 403
    assert anonymous.login("rita", "wrong password!").status == 401

    rita = Client(review.port)
    signed = rita.login("rita")
    cookie = signed.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in cookie, flag
    for reply in (signed, rita.request("GET", "/"), rita.request("GET", f"/candidates/{cid}/crop")):
        assert reply.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Frame-Options"] == "DENY"
    enrolled = rita.request("GET", f"/candidates/{cid}/enrolled")
    assert enrolled.status == 200 and enrolled.body.startswith(b"\xff\xd8")
    assert enrolled.headers["Cache-Control"] == "no-store"
    original = (world.faces_dir / "enroll" / "obama_1.jpg").read_bytes()
    assert enrolled.body == original  # decrypted from the vault: the photo of the matched entry

    assert rita.decide(cid, "confirm", csrf=None).status == 403  # no CSRF token
    assert rita.decide(cid, "confirm", csrf="forged-token").status == 403
    form = rita.request(
        "POST", f"/candidates/{cid}/decision", {"decision": "confirm", "csrf": "x"}, form=True
    )
    assert form.status == 403
    assert not [r for r in world.actions("review.") if r["objects"].get("candidate_id") == cid]

    # a reviewer whose role is withdrawn is shut out at the next request, session or not
    add_account(world.state, "ria", "ria-review-password")
    granted = run_cli(
        "roles", "grant", "--gallery", str(world.state), "--role", "reviewer", "ria", "--actor", "olga"
    )
    assert granted.status == 0, granted.stderr
    ria = Client(review.port)
    assert ria.login("ria", "ria-review-password").status == 200
    assert ria.request("GET", f"/api/candidates/{cid}").status == 200
    revoked = run_cli(
        "roles", "revoke", "--gallery", str(world.state), "--role", "reviewer", "ria", "--actor", "olga"
    )
    assert revoked.status == 0, revoked.stderr
    assert ria.request("GET", f"/api/candidates/{cid}").status == 403
    assert ria.decide(cid, "reject").status == 403

    ok = rita.decide(cid, "confirm")
    assert ok.status == 200 and ok.json()["result"] == "counted-confirm"
    assert rita.decide(cid, "confirm").json()["result"] == "repeated"
