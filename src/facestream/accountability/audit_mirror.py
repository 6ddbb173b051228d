"""The services' audit writer in Kafka mode: every record to the file log AND to the `audit` topic.

Why both. The file log in the state directory is what the transparency report, `audit show`
and `audit verify` read, so it keeps every record it always had. But whoever can rewrite
that directory can rewrite the log, its head seal and `audit.pub` together; the `audit`
topic (never compacted, 400 days) holds a second, off-box copy that they cannot change in
place. Each service writes its own chain there (`<service>-<replica or host>.<random>`),
signed with the same key as the file log, and `facestream audit verify --kafka` checks it.

Order and failure. A record goes to the topic first and is acknowledged by the broker
before it is written to the file: a record that Kafka cannot take (broker down, topic
missing, refused) raises `AuditError` and is in neither store, so the caller's action does
not happen (the review app crashes, is restarted and retries the same message; the matcher's
purge sweep retries at its next run). A record the file then refuses is only on the topic,
which is the safe side for an off-box copy. The chain is sealed with a checkpoint every
`audit_checkpoint_every` records, every `seal_every_s` and on `close()` (call it on
shutdown), each sent only after the records before it were acknowledged: so a refused record
is always the last of its chain, and the next record starts a new chain. The old one ends
`unsealed`, as a crashed writer's does, never with a gap that would read as a deletion.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from facestream.accountability.audit import LOG_FILE, Actor, AuditLog, AuditRecord, AuditWriter
from facestream.accountability.audit_chain import ChainHead
from facestream.accountability.audit_kafka import KafkaAuditLog
from facestream.accountability.audit_keys import AuditSettings, Signer, load_signer, publish_public_key
from facestream.accountability.clock import now_ms
from facestream.errors import AuditError, DeliveryError
from facestream.runtime import metrics
from facestream.settings import KafkaSettings
from facestream.transport.base import Producer
from facestream.transport.groups import GroupReader
from facestream.transport.kafka import KafkaProducer
from facestream.transport.topics import AUDIT

log = logging.getLogger(__name__)

SEAL_EVERY_S = 60.0
"""A quiet service's last records are sealed by a checkpoint within this long."""

PRODUCER_CONFIG: dict[str, Any] = {"linger.ms": 0, "message.timeout.ms": 20_000}
"""No batching delay (each record is flushed alone), and a record is given up and reported within
KafkaAuditLog's 30 s flush: an append that failed leaves nothing queued to arrive later."""

_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.\-]")


def writer_name(service: str, replica_id: str | None = None) -> str:
    """`<service>-<replica>` (the pod name), else `<service>-<host>`: whose chain it is, at a glance."""
    name = f"{service}-{replica_id or socket.gethostname() or 'unknown'}"
    return _NOT_IN_NAME.sub("-", name)[:64]


class _HeldClock:
    """Both stores read the time through this, so a record has the same `at_ms` in each."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._held: int | None = None

    def __call__(self) -> int:
        return self._held if self._held is not None else self._clock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        self._held = self._clock()
        try:
            yield
        finally:
            self._held = None


class AuditMirror(AuditWriter):
    """The file log of `state_dir` and a chain on the `audit` topic, written together; owns `producer`."""

    def __init__(
        self,
        state_dir: Path,
        producer: Producer,
        signer: Signer,
        *,
        writer: str,
        topic_prefix: str = "",
        settings: AuditSettings,
        seal_every_s: float | None = SEAL_EVERY_S,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._settings = settings
        self._held = _HeldClock(clock)
        self._producer = producer
        self._signer = signer
        self._writer = writer
        self._topic_prefix = topic_prefix
        self._mutex = threading.Lock()
        self._closed = False
        self._unsealed = 0
        self.file = AuditLog(state_dir / LOG_FILE, settings=self._settings, signer=signer, clock=self._held)
        self.kafka = self._new_chain()
        self.abandoned: list[str] = []
        """Chains given up after a Kafka failure (they end unsealed)."""
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None
        if seal_every_s is not None:
            self._sealer = threading.Thread(
                target=self._seal_every, args=(seal_every_s,), name="audit-seal", daemon=True
            )
            self._sealer.start()

    @property
    def chain(self) -> str:
        """The topic chain the next record goes to."""
        return self.kafka.chain

    def append(
        self,
        *,
        actor: Actor,
        action: str,
        authorisation_id: str | None = None,
        objects: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """The record as the file log holds it; AuditError (in neither store) if Kafka cannot take it."""
        with self._mutex, self._held.hold():
            if self._closed:
                raise AuditError("the audit log is closed")
            self._on_kafka(
                lambda: self.kafka.append(
                    actor=actor, action=action, authorisation_id=authorisation_id, objects=objects
                )
            )
            record = self.file.append(
                actor=actor, action=action, authorisation_id=authorisation_id, objects=objects
            )
            self._unsealed += 1
            if self._unsealed + 1 >= self._settings.audit_checkpoint_every:
                with contextlib.suppress(AuditError):  # logged; the record itself is in both stores
                    self._seal()
            return record

    def _add(self, next_record: Callable[[ChainHead], dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError("append is overridden: each store builds the record on its own chain")

    def checkpoint(self) -> None:
        """Seal the topic chain's head now (the file log seals its head on every append)."""
        with self._mutex:
            if not self._closed:
                self._seal()

    def close(self) -> None:
        """Seal the topic chain and close the producer; AuditError if the seal did not reach Kafka."""
        self._stop.set()
        if self._sealer is not None:
            self._sealer.join(timeout=60)
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                self._on_kafka(self.kafka.close, next_chain=False)
            finally:
                self._producer.close()

    # -- internals -------------------------------------------------------------------------

    def _new_chain(self) -> KafkaAuditLog:
        """Checkpoints are sent by the mirror, after the record is acknowledged, never in the same
        flush as it: so a refused record is the last of its chain, never a gap before a checkpoint."""
        self._unsealed = 0
        return KafkaAuditLog(
            self._producer,
            self._signer,
            writer=self._writer,
            topic_prefix=self._topic_prefix,
            checkpoint_every=sys.maxsize,
            clock=self._held,
        )

    def _seal(self) -> None:
        self._on_kafka(self.kafka.checkpoint)
        self._unsealed = 0

    def _on_kafka(self, call: Callable[[], object], *, next_chain: bool = True) -> None:
        """Run `call` on the topic chain; a Kafka failure becomes AuditError (and a fresh chain)."""
        try:
            call()
        except (DeliveryError, KafkaException) as exc:
            metrics.AUDIT_TOPIC_FAILURES.inc()
            failed = self.kafka.chain
            self.abandoned.append(failed)
            if next_chain:
                self.kafka = self._new_chain()
            log.error("audit topic %s: chain %s ends unsealed: %s", self.kafka.topic, failed, exc)
            raise AuditError(f"the audit topic {self.kafka.topic} did not take the record: {exc}") from exc

    def _seal_every(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.checkpoint()
            except AuditError as exc:  # logged by _on_kafka; the next append fails the same way
                log.debug("periodic audit checkpoint failed: %s", exc)


def open_audit_mirror(
    state_dir: Path,
    kafka: KafkaSettings,
    settings: AuditSettings,
    writer: str,
    *,
    seal_every_s: float | None = SEAL_EVERY_S,
) -> AuditMirror:
    """The Kafka-mode services' audit writer, signed as `settings` say (the service's own, from its
    flags, env and --config file, as for the file log).

    ConfigError when the key is unusable or the audit topic does not exist, so a service fails
    at start rather than at its first record."""
    state_dir.mkdir(parents=True, exist_ok=True)
    signer = load_signer(settings, state_dir)
    publish_public_key(signer, state_dir)
    GroupReader(kafka).partition_count(kafka.topic_prefix + AUDIT)
    return AuditMirror(
        state_dir,
        KafkaProducer(kafka, extra=PRODUCER_CONFIG),
        signer,
        writer=writer,
        topic_prefix=kafka.topic_prefix,
        settings=settings,
        seal_every_s=seal_every_s,
    )
