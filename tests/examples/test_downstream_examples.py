"""The downstream examples (examples/) on a real broker: the JSON-lines consumer and the webhook
bridge, delivering to a real HTTP receiver that checks every signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from facestream import codec
from facestream.messages import Candidate
from facestream.review.messages import Alert, alert_id_for
from facestream.review.wire import ALERTS
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config, create_missing_topics
from tests.fixtures.hits import make_hit
from tests.fixtures.kafka import read_topic

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "whsec-test-0123456789"


def candidate(camera: str, at_ms: int, identity: str) -> Candidate:
    return Candidate.open_episode(make_hit(camera, at_ms, identity))


def alert(camera: str, at_ms: int, identity: str) -> Alert:
    c = candidate(camera, at_ms, identity)
    return Alert(
        alert_id=alert_id_for(c.candidate_id),
        candidate_id=c.candidate_id,
        episode_id=c.episode_id,
        ref=c.ref,
        face_index=c.face_index,
        bbox=c.bbox,
        score=c.score,
        identity=c.identity,
        entry_id=c.entry_id,
        authorisation_id=c.authorisation_id,
        model_id=c.model_id,
        opened_at_ms=at_ms + 100,
        confirmed_at_ms=at_ms + 60_000,
        confirmed_by=("rita", "rob"),
        zone=c.zone,
    )


def produce(
    settings: KafkaSettings, topic: str, records: list[tuple[bytes, bytes]], *, abort: bool = False
) -> None:
    """In a transaction, as facestream writes these; `abort` leaves them invisible to read_committed."""
    producer = Producer({**client_config(settings), "transactional.id": f"examples-{time.monotonic_ns()}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in records:
        producer.produce(settings.topic_prefix + topic, value, key=key)
    if abort:
        assert producer.flush(30) == 0  # written to the log, then aborted (not merely never sent)
        producer.abort_transaction(30)
    else:
        producer.commit_transaction(30)


def run_example(
    script: str, settings: KafkaSettings, *args: str, timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEBHOOK_SECRET": SECRET}
    kafka = ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix]
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *kafka, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class Receiver:
    """A real HTTP server: answers from `script` in turn (then 200), keeps every request."""

    script: list[int] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # alert ids answered 400
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        if headers.get("X-Facestream-Delivery") in self.refuse:
            status = 400
        else:
            status = self.script.pop(0) if self.script else 200
        self.requests.append((headers, body, status))
        return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.answer(dict(self.headers.items()), body)
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(b"no" if status >= 400 else b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()


def test_the_consumer_prints_committed_candidates_and_alerts_decoded_with_the_schema_files(
    kafka_topics: KafkaSettings,
) -> None:
    settings = kafka_topics
    seen = candidate("cam-1", 1_800_000_000_000, "obama")
    confirmed = alert("cam-2", 1_800_000_100_000, "alex")
    produce(settings, topics.MATCHES, [(seen.key, codec.MATCHES.encode(seen))])
    produce(
        settings,
        topics.MATCHES,
        [(b"aborted", codec.MATCHES.encode(candidate("cam-9", 1, "nobody")))],
        abort=True,
    )
    produce(settings, topics.ALERTS_CONFIRMED, [(confirmed.key, ALERTS.encode(confirmed))])

    done = run_example("consume_matches.py", settings, "--stop-when-idle-s", "6")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_topic = {line["topic"]: line for line in lines}
    assert sorted(by_topic) == ["alerts.confirmed", "matches"] and len(lines) == 2, (
        lines
    )  # not the aborted one
    match = by_topic["matches"]["value"]
    assert (match["candidate_id"], match["identity"], match["captured_at_ms"]) == (
        seen.candidate_id,
        "obama",
        1_800_000_000_000,
    )
    assert match["bbox"] == {"x1": 10.0, "y1": 10.0, "x2": 90.0, "y2": 90.0}
    assert by_topic["alerts.confirmed"]["value"]["confirmed_by"] == ["rita", "rob"]
    assert match["zone"] == by_topic["alerts.confirmed"]["value"]["zone"] == "city-centre"
    assert by_topic["alerts.confirmed"]["key"] == confirmed.alert_id

    again = run_example("consume_matches.py", settings, "--stop-when-idle-s", "4")
    assert again.returncode == 0 and again.stdout == "", "committed lines were printed again"


def test_the_webhook_bridge_delivers_each_alert_signed_retries_outages_and_dead_letters_refusals(
    kafka_topics: KafkaSettings, receiver: Receiver
) -> None:
    settings = kafka_topics
    dead_letters = settings.topic_prefix + "dlq.webhook-bridge"
    create_missing_topics(settings, [NewTopic(dead_letters, 1, 1)])
    alerts = [alert(f"cam-{n}", 1_800_000_000_000 + n * 1000, f"person-{n}") for n in range(3)]
    refused = alerts[2]
    receiver.refuse.add(refused.alert_id)
    receiver.script = [503, 500]  # the receiver is down for the first two requests
    produce(settings, topics.ALERTS_CONFIRMED, [(a.key, ALERTS.encode(a)) for a in alerts])
    produce(
        settings,
        topics.ALERTS_CONFIRMED,
        [(b"aborted", ALERTS.encode(alert("cam-9", 1, "nobody")))],
        abort=True,
    )
    produce(settings, topics.ALERTS_CONFIRMED, [(b"junk", b"\x00\x00\x00\x00\x63not avro")])

    common = ["--url", receiver.url, "--retry-initial-s", "0.2", "--stop-when-idle-s", "6"]
    done = run_example("webhook_bridge.py", settings, *common)
    assert done.returncode == 0, done.stderr

    delivered = [(h, body) for h, body, status in receiver.requests if status == 200]
    assert sorted(h["X-Facestream-Delivery"] for h, _ in delivered) == sorted(a.alert_id for a in alerts[:2])
    assert [status for _, _, status in receiver.requests].count(503) == 1  # retried, not given up
    for headers, body in delivered:
        expected = hmac.new(
            SECRET.encode(), headers["X-Facestream-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert hmac.compare_digest(headers["X-Facestream-Signature"], "sha256=" + expected)
        assert abs(int(headers["X-Facestream-Timestamp"]) - time.time()) < 120
        sent = json.loads(body)
        assert sent["alert_id"] == headers["X-Facestream-Delivery"] and sent["confirmed_by"] == [
            "rita",
            "rob",
        ]
    assert all(h["X-Facestream-Delivery"] != alert_id_for(candidate("cam-9", 1, "nobody").candidate_id)
               for h, _, _ in receiver.requests)  # fmt: skip

    dead = read_topic(settings, dead_letters, 2, 30)
    reasons = {e.key: dict(e.headers)["dlq.reason"] for e in dead}
    assert reasons == {refused.key: b"http_400", b"junk": b"undecodable"}, reasons

    # Everything handled was committed: a restart delivers nothing twice.
    before = len(receiver.requests)
    again = run_example("webhook_bridge.py", settings, *common[:-1], "4")
    assert again.returncode == 0, again.stderr
    assert len(receiver.requests) == before


def test_the_webhook_bridge_refuses_a_missing_secret_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "webhook_bridge.py"), "--url", "http://127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "WEBHOOK_SECRET"},
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("environment variable WEBHOOK_SECRET is empty or not set")
    )
