"""What every Kafka client here shares: its librdkafka settings, how its errors are reported, how a
message becomes an `Envelope`, and how long a retry loop waits between two asks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message

from facestream.errors import ConfigError
from facestream.settings import KafkaSettings
from facestream.transport.base import Envelope, Headers

log = logging.getLogger(__name__)

OPERATOR_ERRORS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._SSL,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)
"""Client errors only an operator can fix (credentials, certificates, ACLs): logged as errors."""


CONNECTION_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})
"""The client cannot reach a broker (down, restarting, a wrong address)."""
CONNECTION_LOG_EVERY_S = 30.0
"""While a client cannot connect, its warning is repeated at most this often (librdkafka reports
every failed attempt, several a second)."""


class ClientErrors:
    """librdkafka's error callback for one client.

    A refused login or a missing right would otherwise show only as timeouts further up, so it is
    logged as an error, saying what the broker said. A broker it cannot reach is a warning naming
    the bootstrap address (a wrong address and a broker that is down read the same in a stack
    trace), repeated at most every `CONNECTION_LOG_EVERY_S` while it lasts; the rest is debug.
    """

    def __init__(self, bootstrap_servers: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._clock = clock
        self._warned_at: float | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() in OPERATOR_ERRORS or error.fatal():
            log.error("kafka at %s refused this client: %s", self.bootstrap_servers, error.str())
        elif error.code() in CONNECTION_ERRORS and self._due():
            log.warning(
                "kafka at %s: cannot connect (%s); retrying, said again in %.0fs if it lasts",
                self.bootstrap_servers,
                error.str(),
                CONNECTION_LOG_EVERY_S,
            )
        else:
            log.debug("kafka client: %s", error.str())

    def _due(self) -> bool:
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < CONNECTION_LOG_EVERY_S:
            return False
        self._warned_at = now
        return True


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka settings shared by producers, consumers and the admin client."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol,
        # librdkafka would log connection failures itself, unformatted, on every attempt; they
        # come through `error_cb` instead, logged by facestream's loggers (and so as JSON).
        "log_level": 2,
        "error_cb": ClientErrors(settings.bootstrap_servers),
        # After a broker restart, librdkafka 2.16's default (rebootstrap) decommissions the brokers
        # it had learned, and a transactional producer then waits on the dead handle of its group
        # coordinator: every first send_offsets_to_transaction blocked until replaced (20 s a stage).
        "metadata.recovery.strategy": settings.metadata_recovery_strategy,
    }
    if settings.librdkafka_debug:
        config["debug"] = settings.librdkafka_debug  # raises librdkafka's log level to debug
    if "SASL" in settings.security_protocol:
        if not settings.sasl_username or settings.sasl_password is None:
            raise ConfigError("SASL needs both sasl_username and sasl_password")
        config["sasl.mechanisms"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    if "SSL" in settings.security_protocol:
        if settings.ssl_ca_location:
            config["ssl.ca.location"] = str(settings.ssl_ca_location)
        if settings.ssl_certificate_location:
            config["ssl.certificate.location"] = str(settings.ssl_certificate_location)
        if settings.ssl_key_location:
            config["ssl.key.location"] = str(settings.ssl_key_location)
    return config


def to_envelope(message: Message) -> Envelope:
    """A delivered message as the transport-neutral `Envelope` (the in-process broker's too)."""
    raw_headers: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    headers: Headers = tuple((k, v or b"") for k, v in raw_headers)
    _, timestamp = message.timestamp()
    return Envelope(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value() or b"",
        headers=headers,
        timestamp_ms=timestamp,
    )


RETRY_CAP_S = 5.0
"""The longest wait between two asks of a broker that did not answer (a consumer's commit, a
transaction call), whose waits double from a fraction of a second. A broker restart takes seconds:
asking at least every 5 s puts a client back to work within 5 s of the broker's return, well inside
the 30 s in which every stage must consume again after a broker restart (docs/delivery.md,
tests/reliability/test_broker_faults.py), while a broker away for minutes is asked 12 times a
minute, not hammered. Not the runner's `retry_max_s`: that paces the next try of a rolled-back
batch; these are single Kafka calls, within one try."""


def next_retry_delay(delay_s: float) -> float:
    """The wait after one of `delay_s`: doubled, at most `RETRY_CAP_S`."""
    return min(delay_s * 2, RETRY_CAP_S)
