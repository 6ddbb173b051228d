"""Who may talk to the secured broker, and what each service principal may do there.

Against the real broker started by `scripts/kafka.sh start --secure`: a wrong password, an unknown
user, a client that skips TLS or trusts another CA are all refused; each service may write its own
outputs and read its own inputs with its own group — and is refused (TOPIC/GROUP authorization
failed) everything else, e.g. the detector producing to `matches` or reading `embeddings`.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from facestream.errors import DeliveryError
from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer, RangeReader, client_config
from tests.fixtures.security import PREFIX, SecureKafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def refusal_of_login(settings: KafkaSettings) -> str:
    """Why a client cannot log in (it must get no metadata): the errors librdkafka reported."""
    errors: list[str] = []
    admin = AdminClient({**client_config(settings), "error_cb": lambda error: errors.append(error.str())})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    admin.poll(1)  # serve the error callbacks
    return " | ".join(errors)


def test_the_right_password_lists_topics_and_a_wrong_one_or_an_unknown_user_is_refused(
    secure_kafka: SecureKafka,
) -> None:
    topics = AdminClient(client_config(secure_kafka.settings("detector"))).list_topics(timeout=15).topics
    assert PREFIX + "frames" in topics
    wrong = refusal_of_login(secure_kafka.settings("detector", password="not-the-password"))
    assert "Authentication failed" in wrong, wrong
    unknown = refusal_of_login(
        secure_kafka.settings("detector").model_copy(update={"sasl_username": "mallory"})
    )
    assert "Authentication failed" in unknown, unknown


def test_a_client_without_tls_or_trusting_another_ca_is_refused(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    plain = secure_kafka.settings("detector").model_copy(update={"security_protocol": "SASL_PLAINTEXT"})
    assert refusal_of_login(plain)  # TLS is not optional: no metadata without it
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
            "-keyout",
            str(tmp_path / "other.key"),
            "-out",
            str(other_ca),
        ],
        check=True,
        capture_output=True,
    )
    mistrusting = secure_kafka.settings("detector").model_copy(update={"ssl_ca_location": other_ca})
    refusal = refusal_of_login(mistrusting)
    assert "certificate verify failed" in refusal, refusal


# -- writes ----------------------------------------------------------------------------------------


def produce(settings: KafkaSettings, topic: str) -> None:
    producer = KafkaProducer(settings)
    try:
        producer.produce(PREFIX + topic, b"probe", key=b"probe")
        producer.flush(20)
    finally:
        producer.close()


OWN_OUTPUTS = [
    ("frame-sampler", "frames"),
    ("frame-sampler", "dlq.frame-sampler"),
    ("detector", "faces"),
    ("detector", "dlq.detector"),
    ("embedder", "embeddings"),
    ("matcher", "hits"),
    ("matcher", "matches"),
    ("matcher", "episodes.ended"),
    ("review", "alerts.confirmed"),
]
FOREIGN_OUTPUTS = [
    ("detector", "matches"),
    ("detector", "frames"),
    ("frame-sampler", "faces"),
    ("embedder", "hits"),
    ("matcher", "alerts.confirmed"),
    ("matcher", "cameras"),
    ("review", "matches"),
    ("review", "episodes.ended"),
    ("review", "audit.other"),
]


@pytest.mark.parametrize(("user", "topic"), OWN_OUTPUTS)
def test_a_service_writes_its_own_outputs(secure_kafka: SecureKafka, user: str, topic: str) -> None:
    produce(secure_kafka.settings(user), topic)


@pytest.mark.parametrize(("user", "topic"), FOREIGN_OUTPUTS)
def test_a_service_cannot_write_a_topic_it_does_not_own(
    secure_kafka: SecureKafka, user: str, topic: str
) -> None:
    with pytest.raises(DeliveryError, match="Topic authorization failed"):
        produce(secure_kafka.settings(user), topic)


def test_no_service_can_create_topics(secure_kafka: SecureKafka) -> None:
    for user in ("detector", "review"):
        admin = AdminClient(client_config(secure_kafka.settings(user)))
        futures = admin.create_topics(
            [NewTopic(f"{PREFIX}new-{uuid.uuid4().hex[:6]}", 1, 1)], request_timeout=15
        )
        for future in futures.values():
            with pytest.raises(KafkaException) as caught:
                future.result(timeout=30)
            assert caught.value.args[0].code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.CLUSTER_AUTHORIZATION_FAILED,
            )


# -- reads -----------------------------------------------------------------------------------------


def first_error_or_message(
    settings: KafkaSettings, topic: str, group: str, timeout_s: float = 30
) -> KafkaError | bytes:
    """Subscribe as `settings` with `group`; the first message, or the first error the broker sends."""
    consumer = CKConsumer(
        {
            **client_config(settings),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([PREFIX + topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                return error
            return message.value() or b""
        raise AssertionError(f"neither a message nor an error on {topic} within {timeout_s}s")
    finally:
        consumer.close()


def test_a_service_reads_its_own_input_with_its_own_group(secure_kafka: SecureKafka) -> None:
    produce(secure_kafka.settings("frame-sampler"), "frames")
    got = first_error_or_message(secure_kafka.settings("detector"), "frames", f"{PREFIX}facestream-detector")
    assert got == b"probe"


FOREIGN_READS = [
    ("detector", "embeddings"),
    ("frame-sampler", "faces"),  # frames it may read back: where a file camera it takes over stopped
    ("matcher", "frames"),
    ("review", "embeddings"),
    ("embedder", "matches"),
]


@pytest.mark.parametrize(("user", "topic"), FOREIGN_READS)
def test_a_service_cannot_read_a_topic_it_does_not_need(
    secure_kafka: SecureKafka, user: str, topic: str
) -> None:
    got = first_error_or_message(secure_kafka.settings(user), topic, f"{PREFIX}facestream-{user}")
    assert isinstance(got, KafkaError) and got.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, got


def test_a_direct_read_refused_by_the_acls_says_so_at_once(secure_kafka: SecureKafka) -> None:
    """A range read the broker refuses is an error naming the refusal, not a 15 s wait ending in
    "not read to its end" (nor, as before, an empty answer taken for "nothing there")."""
    reader = RangeReader(secure_kafka.settings("detector"))
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError, match=r"embeddings: Kafka refused the read: .*[Aa]uthoriz"):
            reader.read(f"{PREFIX}embeddings", 0, 0, 1, timeout_s=15)
    finally:
        reader.close()
    assert time.monotonic() - started < 10


def test_a_service_reads_back_a_topic_the_acls_allow_however_long_it_reads(
    secure_kafka: SecureKafka,
) -> None:
    """The range reader's group is a placeholder the ACLs do not name; the broker's refusal of its
    coordinator lookup, which arrives some time into the reader's life, is no refusal of the read.
    (It was taken for one: the secured pipeline's frame-sampler never found where its camera had
    stopped, and never started it.)"""
    since_ms = int(time.time() * 1000) - 1000
    produce(secure_kafka.settings("frame-sampler"), "frames")
    reader = RangeReader(secure_kafka.settings("frame-sampler"))
    try:
        deadline = time.monotonic() + 8
        reads = 0
        while time.monotonic() < deadline:
            ranges = reader.ranges_since(f"{PREFIX}frames", since_ms)
            got = reader.read_ranges(f"{PREFIX}frames", ranges, timeout_s=15, whole=True)
            assert b"probe" in [envelope.value for envelope in got]
            reads += 1
            time.sleep(0.5)
    finally:
        reader.close()
    assert reads >= 5


def test_a_service_cannot_use_another_services_group(secure_kafka: SecureKafka) -> None:
    got = first_error_or_message(secure_kafka.settings("detector"), "frames", f"{PREFIX}facestream-matcher")
    assert isinstance(got, KafkaError) and got.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, got
