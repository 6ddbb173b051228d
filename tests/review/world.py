"""A deployment for the review tests: a state directory with a real authorisation, real enrolled
photos and separated roles; the catalogue's topics on the real broker; the `facestream review`
process; candidates made from real probe photos; and a small HTTP client for its API.

Roles: olga (operator), rita and rob (reviewers), oscar (officer: has a sign-in account but
not the reviewer role), audrey (auditor), arthur (authoriser).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pytest

from facestream import codec
from facestream.messages import BBox, Candidate, FrameRef, Hit
from facestream.review.messages import Alert, Decision, Verdict
from facestream.review.wire import ALERTS, REVIEWS
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer, ensure_topics
from facestream.transport.topics import catalogue
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import ENV_VARS, grant_authorisation, run_cli
from tests.fixtures.audit import AuditKey
from tests.fixtures.kafka import TEST_PARTITIONS, read_topic
from tests.integration.processes import ServiceProcess, Services, kafka_args, wait_until

PASSWORDS = {name: f"{name}-review-password" for name in ("rita", "rob", "oscar")}
PARTITIONS = {**TEST_PARTITIONS, "reviews": TEST_PARTITIONS["matches"]}
WEB_LINE = re.compile(r"review web app on port (\d+)")


@dataclass
class World:
    state: Path
    kafka: KafkaSettings
    authorisation: str
    entries: dict[str, str]
    """identity -> entry id of its first enrolled photo"""
    model_id: str
    audit_key: AuditKey
    finder: FaceFinder
    faces_dir: Path
    data_dir: Path
    published: list[Candidate] = field(default_factory=list)

    # -- candidates and decisions on the topics ---------------------------------------------

    def candidate(self, identity: str, probe: str, camera: str, at_ms: int, score: float = 0.71) -> Candidate:
        """A candidate of `identity` whose crop is the face in probe/<probe>.jpg, cut as the detector does."""
        image = cv2.imread(str(self.faces_dir / "probe" / f"{probe}.jpg"))
        assert image is not None
        face = max(self.finder.find(image), key=lambda f: f.bbox.area)
        box, (h, w) = face.bbox, image.shape[:2]
        margin = 0.25 * box.width
        crop = image[
            max(0, int(box.y1 - margin)) : min(h, int(box.y2 + margin)),
            max(0, int(box.x1 - margin)) : min(w, int(box.x2 + margin)),
        ]
        crop = cv2.resize(crop, (round(128 * crop.shape[1] / crop.shape[0]), 128))
        ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        hit = Hit(
            ref=FrameRef(camera, f"{camera}@{at_ms}", at_ms, f"rtsp://{camera}.city.example/stream"),
            face_index=0,
            bbox=BBox(box.x1, box.y1, box.x2, box.y2),
            score=score,
            identity=identity,
            entry_id=self.entries[identity],
            authorisation_id=self.authorisation,
            model_id=self.model_id,
            thumbnail_jpeg=jpeg.tobytes(),
            zone="riverside",
        )
        return Candidate.open_episode(hit)

    def publish(self, *candidates: Candidate) -> None:
        producer = KafkaProducer(self.kafka)
        for c in candidates:
            producer.produce(self.topic(topics.MATCHES), codec.MATCHES.encode(c), key=c.key)
        producer.flush(15)
        self.published.extend(candidates)

    def decide(self, candidate_id: str, reviewer: str, verdict: Verdict) -> Decision:
        """A decision put on `reviews` directly, as the web app would (or as anyone who can write it)."""
        decision = Decision.new(candidate_id, reviewer, verdict, int(time.time() * 1000))
        self.publish_raw(topics.REVIEWS, REVIEWS.encode(decision), decision.key)
        return decision

    def publish_raw(self, topic: str, value: bytes, key: bytes | None) -> None:
        producer = KafkaProducer(self.kafka)
        producer.produce(self.topic(topic), value, key=key)
        producer.flush(15)

    def topic(self, name: str) -> str:
        return self.kafka.topic_prefix + name

    def alerts(self, count: int, timeout_s: float = 60) -> list[Alert]:
        return [
            ALERTS.decode(e.value)
            for e in read_topic(self.kafka, self.topic(topics.ALERTS_CONFIRMED), count, timeout_s)
        ]

    # -- the service -----------------------------------------------------------------------

    def start(self, running: Services, *extra: str, cookie_secure: bool = True) -> ServiceProcess:
        args = service_args(self.kafka, self.state, self.data_dir)
        if not cookie_secure:
            args.append("--no-review-cookie-secure")
        proc = running.start("review", *args, *extra)
        proc.wait_ready(120)
        return proc

    # -- the audit log ---------------------------------------------------------------------

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.state / "audit.log").read_text().splitlines()]

    def actions(self, prefix: str = "") -> list[dict[str, Any]]:
        return [
            r for r in self.audit() if r["action"].startswith(prefix) and r["action"] != "audit.checkpoint"
        ]


def service_args(kafka: KafkaSettings, state: Path, data_dir: Path) -> list[str]:
    """The flags of a `facestream review` under test: any free ports, the web app on loopback."""
    return [
        *kafka_args(kafka),
        "--gallery", str(state),
        "--metrics-port", "0",
        "--review-port", "0",
        "--review-host", "127.0.0.1",
        "--group-id", kafka.topic_prefix + "review",
        "--review-data-dir", str(data_dir),
        "--review-sweep-interval-s", "0.5",
    ]  # fmt: skip


def web_port(proc: ServiceProcess, timeout_s: float = 60) -> int:
    found: list[int] = []

    def seen() -> bool:
        match = WEB_LINE.search(proc.log())
        if match:
            found.append(int(match.group(1)))
        return bool(match)

    wait_until(seen, timeout_s, "the web app's port", proc)
    return found[0]


@contextmanager
def environment(audit_key: AuditKey) -> Iterator[None]:
    """Keys from the environment, as a deployment gives them; no actor or state leaking in from the shell.
    Also inherited by the service processes started inside."""
    with pytest.MonkeyPatch.context() as env:
        for name in ENV_VARS:
            env.delenv(name, raising=False)
        env.setenv("FACESTREAM_PHOTO_KEY", base64.b64encode(os.urandom(32)).decode())
        env.setenv("FACESTREAM_AUDIT_KEY", audit_key.seed_b64)
        env.setenv("FACESTREAM_MODEL_EXECUTION_PROVIDER", "cpu")
        yield


def build_world(
    root: Path, kafka: KafkaSettings, faces_dir: Path, finder: FaceFinder, model_id: str, audit_key: AuditKey
) -> World:
    """Topics, an authorisation, obama and biden enrolled under it, roles and reviewer accounts.
    Call inside `environment(...)`."""
    ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions=PARTITIONS))
    state = root / "state"
    auth = grant_authorisation(state, case="CASE-2026-0042", actor="root")
    entries = {}
    for identity in ("obama", "biden"):
        enrolled = run_cli(
            "gallery", "enroll", "--gallery", str(state), "--identity", identity, "--authorisation", auth,
            str(faces_dir / "enroll" / f"{identity}_1.jpg"), "--actor", "root",
        )  # fmt: skip
        assert enrolled.status == 0, enrolled.stderr
        entries[identity] = enrolled.json()[0]["entries"][0]["entry_id"]
    for args in (
        ("operator", "olga", "root"),
        ("reviewer", "rita", "olga"),
        ("reviewer", "rob", "olga"),
        ("officer", "oscar", "olga"),
        ("auditor", "audrey", "olga"),
        ("authoriser", "arthur", "olga"),
    ):
        role, member, by = args
        granted = run_cli("roles", "grant", "--gallery", str(state), "--role", role, member, "--actor", by)
        assert granted.status == 0, granted.stderr
    for name, password in PASSWORDS.items():
        add_account(state, name, password)
    return World(
        state=state,
        kafka=kafka,
        authorisation=auth,
        entries=entries,
        model_id=model_id,
        audit_key=audit_key,
        finder=finder,
        faces_dir=faces_dir,
        data_dir=root / "faust",
    )


def add_account(state: Path, name: str, password: str, actor: str = "olga") -> dict[str, Any]:
    stdin = sys.stdin
    sys.stdin = io.StringIO(password + "\n")
    try:
        added = run_cli(
            "review", "add-reviewer", name, "--password-stdin", "--gallery", str(state), "--actor", actor
        )
    finally:
        sys.stdin = stdin
    assert added.status == 0, added.stderr
    return added.json()[0]


# -- the HTTP API ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One reviewer's HTTP session with the web app: keeps the session cookie, never follows redirects."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.set_cookies: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        form: bool = False,
    ) -> Reply:
        data = None
        sent = dict(headers or {})
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self.cookie:
            sent["Cookie"] = self.cookie
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(req, timeout=30) as response:
                reply = Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            reply = Reply(error.code, dict(error.headers), error.read())
        self.set_cookies = [v for k, v in reply.headers.items() if k.lower() == "set-cookie"]
        return reply

    def login(self, name: str, password: str | None = None) -> Reply:
        reply = self.request("POST", "/api/login", {"name": name, "password": password or PASSWORDS[name]})
        if reply.status == 200:
            cookie = reply.headers["Set-Cookie"]
            self.cookie = cookie.split(";", 1)[0]
            self.csrf = reply.json()["csrf"]
        return reply

    def decide(self, candidate_id: str, verdict: str, csrf: str | None = "session") -> Reply:
        headers = (
            {"X-CSRF-Token": self.csrf or ""}
            if csrf == "session"
            else ({"X-CSRF-Token": csrf} if csrf else {})
        )
        return self.request(
            "POST", f"/api/candidates/{candidate_id}/decision", {"decision": verdict}, headers
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
