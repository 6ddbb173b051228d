"""Deliver facestream's confirmed alerts to an HTTP endpoint (a webhook), signed, at least once.

    WEBHOOK_SECRET=... python examples/webhook_bridge.py --url https://ops.example/alerts \\
        --bootstrap-servers kafka:9092 --topic-prefix city1.

Each alert from `alerts.confirmed` is POSTed as JSON (the alert's fields, schemas/alerts) with:
- `X-Facestream-Delivery`: the alert id. A redelivery (after a crash or a retry) carries the same
  id, so the receiver can drop repeats: delivery is at least once.
- `X-Facestream-Timestamp` (unix seconds) and `X-Facestream-Signature: sha256=<hex>`, the HMAC-SHA256
  of `<timestamp>.<body>` with the shared secret (read from an environment variable, never a
  flag, so it is not in `ps`). The receiver recomputes it and rejects old timestamps (replays).

A 2xx is delivered; the offset is committed only then. A connection error, timeout, 408, 429 or
5xx is retried with doubling back-off (a 429/503 Retry-After is honoured) for as long as it takes:
an alert is never dropped because the receiver is down. Any other answer (a 4xx: the receiver
refuses this alert) cannot get better by retrying: the alert goes to the dead-letter topic with
the status in its headers, and the bridge goes on. SIGTERM finishes the alert in hand.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer
from kafka_client import add_kafka_args, consumer_config, records
from topic_schemas import NotAFacestreamMessage, TopicSchemas

log = logging.getLogger("webhook-bridge")
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Delivered:
    status: int  # the final HTTP status
    attempts: int


class Refused(Exception):
    """The receiver answered with a status that retrying cannot change."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook:
    def __init__(
        self, url: str, secret: bytes, *, timeout_s: float, retry_initial_s: float, retry_max_s: float
    ) -> None:
        self.url, self.secret, self.timeout_s = url, secret, timeout_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s

    def deliver(self, alert_id: str, alert: dict[str, object], stop: threading.Event) -> Delivered | None:
        """POST until a 2xx (Delivered) or a refusal (raises Refused); None if stopped while retrying."""
        body = json.dumps(alert, sort_keys=True, separators=(",", ":")).encode()
        delay, attempts = self.retry_initial_s, 0
        while True:
            attempts += 1
            timestamp = int(time.time())
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "facestream-webhook-bridge",
                    "X-Facestream-Event": "alert.confirmed",
                    "X-Facestream-Delivery": alert_id,
                    "X-Facestream-Timestamp": str(timestamp),
                    "X-Facestream-Signature": sign(self.secret, timestamp, body),
                },
            )
            wait = delay
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return Delivered(response.status, attempts)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRIED_STATUSES:
                    raise Refused(exc.code, exc.read().decode(errors="replace")) from None
                retry_after = exc.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), self.retry_max_s)
                why = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                why = str(getattr(exc, "reason", exc))
            log.warning("alert %s: %s (attempt %d); retrying in %.1fs", alert_id, why, attempts, wait)
            if stop.wait(wait):
                return None
            delay = min(delay * 2, self.retry_max_s)


def dead_letter(producer: Producer, topic: str, message: Message, reason: str, detail: str) -> None:
    """The alert as it was read, with why and where from: nothing is lost, an operator can replay it."""
    headers: list[tuple[str, str | bytes | None]] = [
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail.encode()[:1000]),
        ("dlq.origin", f"{message.topic()}/{message.partition()}@{message.offset()}".encode()),
    ]
    producer.produce(topic, message.value(), key=message.key(), headers=headers)
    if producer.flush(30) != 0:
        raise RuntimeError(f"dead-letter topic {topic}: not written within 30 s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_kafka_args(parser)
    parser.add_argument("--url", required=True, help="the receiver's URL (https in production)")
    parser.add_argument(
        "--secret-env", default="WEBHOOK_SECRET", help="environment variable with the HMAC secret"
    )
    parser.add_argument("--dead-letter-topic", help="(default: <prefix>dlq.webhook-bridge; it must exist)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per request")
    parser.add_argument("--retry-initial-s", type=float, default=1.0)
    parser.add_argument("--retry-max-s", type=float, default=60.0)
    parser.add_argument("--stop-when-idle-s", type=float, help="exit 0 after this long with no new alert")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        parser.error(f"--secret-env: environment variable {args.secret_env} is empty or not set")
    if not args.url.startswith(("http://", "https://")):
        parser.error(f"--url {args.url}: expected an http:// or https:// URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = consumer_config(args, "webhook-bridge")
    consumer = Consumer(config)
    producer = Producer({k: v for k, v in config.items() if k not in CONSUMER_ONLY})
    dead_letters = args.dead_letter_topic or args.topic_prefix + "dlq.webhook-bridge"
    webhook = Webhook(
        args.url,
        secret.encode(),
        timeout_s=args.timeout_s,
        retry_initial_s=args.retry_initial_s,
        retry_max_s=args.retry_max_s,
    )
    schemas = TopicSchemas()
    consumer.subscribe([args.topic_prefix + "alerts.confirmed"])
    try:
        for message in records(
            consumer,
            stopped=stop.is_set,
            stop_when_idle_s=args.stop_when_idle_s,
            on_error=lambda text: log.warning("kafka: %s", text),
        ):
            try:
                alert = schemas.decode(message.value() or b"", "alerts").value
                delivered = webhook.deliver(str(alert["alert_id"]), alert, stop)
                if delivered is None:
                    break  # stopped while retrying: not committed, delivered after the restart
                log.info(
                    "alert %s delivered (HTTP %d, attempt %d)", alert["alert_id"], *vars(delivered).values()
                )
            except NotAFacestreamMessage as exc:
                dead_letter(producer, dead_letters, message, "undecodable", str(exc))
                log.error("%s/%d@%d: not an alert, dead-lettered: %s", message.topic(), message.partition(),
                          message.offset(), exc)  # fmt: skip
            except Refused as exc:
                dead_letter(producer, dead_letters, message, f"http_{exc.status}", str(exc))
                log.error("alert %s refused by the receiver, dead-lettered: %s", alert["alert_id"], exc)
            consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()
    return 0


CONSUMER_ONLY = frozenset({"group.id", "isolation.level", "enable.auto.commit", "auto.offset.reset"})

if __name__ == "__main__":
    raise SystemExit(main())
