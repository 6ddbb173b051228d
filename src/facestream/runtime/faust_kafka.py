"""Our Kafka settings and messages in faust's terms, for the two faust apps (episodes, review).

They share these so both reach the broker exactly as the confluent clients do.
"""

from __future__ import annotations

import ssl
from typing import Any

from facestream.errors import ConfigError
from facestream.runtime.faust_import import faust
from facestream.settings import KafkaSettings
from facestream.transport.base import Envelope


def faust_brokers(kafka: KafkaSettings, scheme: str = "kafka") -> list[str]:
    """faust broker URLs; scheme `faust_committed.SCHEME` reads read_committed."""
    return [f"{scheme}://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip()]


def faust_credentials(kafka: KafkaSettings) -> faust.auth.Credentials | None:
    """The same security settings the confluent clients use, in faust's terms."""
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if "SSL" in protocol:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
        )
        if kafka.ssl_certificate_location:
            context.load_cert_chain(
                str(kafka.ssl_certificate_location),
                str(kafka.ssl_key_location) if kafka.ssl_key_location else None,
            )
    if "SASL" not in protocol:
        return faust.SSLCredentials(context)
    if not kafka.sasl_username or kafka.sasl_password is None:
        raise ConfigError("SASL needs both sasl_username and sasl_password")
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


def faust_envelope(message: Any) -> Envelope:
    """A faust message as the transport's Envelope, so DLQ origin headers match the runner's."""
    headers = tuple((k, v or b"") for k, v in (message.headers or ()))
    return Envelope(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        headers=headers,
        timestamp_ms=round((message.timestamp or 0) * 1000),
    )
