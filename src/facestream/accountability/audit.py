"""The audit log: who did what, when, under which authorisation — append-only and tamper-evident.

Every grant, revocation, enrollment, removal, search, candidate, review decision, export and
configuration change is one record (ids, labels and counts; never face images or vectors).
In embedded mode the log is `audit.log` in the gallery directory: JSON lines, hash-chained
and fsync'd before `append` returns, with a signed checkpoint every
`audit_checkpoint_every` records and a signed seal of the last record in `audit.head`. In
Kafka mode the same records go to the `audit` topic (audit_kafka.py). The format and what
verification checks are in audit_chain.py and audit_verify.py; docs/audit.md has the lot.

Appending fails closed: if the record cannot be written (content the log must not hold, a
damaged tail, no key), `AuditError` is raised and the caller's action must not go on.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facestream.accountability.audit_chain import (
    CHECKPOINT,
    ChainHead,
    b64,
    build_record,
    canonical,
    checkpoint_record,
    head_after,
    head_payload,
)
from facestream.accountability.audit_keys import (
    AuditSettings,
    KeyRing,
    Signer,
    load_signer,
    publish_public_key,
)
from facestream.accountability.audit_verify import SignedHead, Verdict, parse_record, verify_file_bytes
from facestream.accountability.clock import now_ms
from facestream.errors import AuditError

LOG_FILE = "audit.log"
HEAD_FILE = "audit.head"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, and in which role they were allowed to."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at_ms: int
    actor: str
    role: str
    action: str
    """e.g. authorisation.grant, gallery.enroll, identify.run, candidate.open, review.confirm"""
    authorisation_id: str | None = None
    objects: Mapping[str, Any] = field(default_factory=dict)
    """ids only (entry ids, candidate ids, camera ids, counts) — never images or vectors."""
    chain: str = ""
    prev: str = ""
    hash: str = ""

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> AuditRecord:
        return cls(
            seq=rec["seq"],
            at_ms=rec["at_ms"],
            actor=rec["actor"],
            role=rec["role"],
            action=rec["action"],
            authorisation_id=rec["authorisation_id"],
            objects=rec["objects"],
            chain=rec["chain"],
            prev=rec["prev"],
            hash=rec["hash"],
        )


class AuditWriter(ABC):
    """What every caller needs. The file log and the Kafka sink both derive from it, so a record is
    checked and built one way; each store only says, in `_add`, where its chain's head is and
    where the record (and any checkpoint it is due) goes."""

    _clock: Callable[[], int]

    def append(
        self,
        *,
        actor: Actor,
        action: str,
        authorisation_id: str | None = None,
        objects: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        if action == CHECKPOINT:
            raise AuditError("checkpoints are written by the audit log itself")

        def next_record(head: ChainHead) -> dict[str, Any]:
            return build_record(
                head,
                at_ms=self._clock(),
                actor=actor.name,
                role=actor.role,
                action=action,
                authorisation_id=authorisation_id,
                objects=objects or {},
            )

        return AuditRecord.from_json(self._add(next_record))

    @abstractmethod
    def _add(self, next_record: Callable[[ChainHead], dict[str, Any]]) -> dict[str, Any]:
        """Under the store's lock: build the record on the chain's head, store it, return it."""


class AuditLog(AuditWriter):
    """The file log. Safe for threads and for several processes (an exclusive flock per append).

    `settings` (key, checkpoint cadence) are what the command or service was configured with:
    `settings_from(args, AuditSettings)`, so --config, env and flags apply. Left out, they are
    AuditSettings() from the environment alone, built on the first append: for library use and
    for reading (`records()` needs none), never for a command, which would ignore its config file.
    """

    def __init__(
        self,
        path: Path,
        *,
        settings: AuditSettings | None = None,
        signer: Signer | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.path = path
        self.head_path = path.with_name(HEAD_FILE)
        self._settings = settings
        self._signer = signer
        self._clock = clock
        self._mutex = threading.Lock()
        self._published = False
        self._cached: tuple[int, int, ChainHead] | None = None
        """(inode, size, head) after our own last write: skips re-reading the tail."""

    @property
    def settings(self) -> AuditSettings:
        if self._settings is None:
            self._settings = AuditSettings()
        return self._settings

    def _add(self, next_record: Callable[[ChainHead], dict[str, Any]]) -> dict[str, Any]:
        with self._mutex, self._locked() as fd:
            signer = self._ensure_signer()
            rec = next_record(self._tail(fd))
            out = [rec]
            if (rec["seq"] + 2) % self.settings.audit_checkpoint_every == 0:
                out.append(checkpoint_record(head_after(rec), signer, rec["at_ms"]))
            self._write(fd, out, signer)
        return rec

    def checkpoint(self) -> None:
        """Sign the chain's head now (e.g. at a shift change), if anything came after the last one."""
        with self._mutex, self._locked() as fd:
            signer = self._ensure_signer()
            head = self._tail(fd)
            if head.seq < 0 or self._last_is_checkpoint(fd):
                return
            self._write(fd, [checkpoint_record(head, signer, self._clock())], signer)

    def records(self) -> Iterator[AuditRecord]:
        """Every record as stored. Unverified: run audit_verify first when it matters."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                rec = parse_record(line.rstrip(b"\n"))
                if isinstance(rec, str):
                    raise AuditError(f"{self.path} line {number}: {rec}")
                yield AuditRecord.from_json(rec)

    # -- internals -------------------------------------------------------------------------

    def _ensure_signer(self) -> Signer:
        """Load the key on first append (verifying needs none), and put its public half in audit.pub."""
        if self._signer is None:
            self._signer = load_signer(self.settings, self.path.parent)
        if not self._published:
            publish_public_key(self._signer, self.path.parent)
            self._published = True
        return self._signer

    def _write(self, fd: int, records: list[dict[str, Any]], signer: Signer) -> None:
        data = b"".join(canonical(r) + b"\n" for r in records)
        written = os.write(fd, data)
        if written != len(data):
            raise AuditError(f"{self.path}: short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
        last = head_after(records[-1])
        st = os.fstat(fd)
        self._cached = (st.st_ino, st.st_size, last)
        self._seal(last, signer, records[-1]["at_ms"])

    def _seal(self, head: ChainHead, signer: Signer, at_ms: int) -> None:
        """Sign the last record into audit.head (atomically replaced), so a cut tail shows."""
        seal = SignedHead(
            head.chain,
            head.seq,
            head.hash,
            at_ms,
            signer.key_id,
            b64(signer.sign(head_payload(head.chain, head.seq, head.hash, at_ms))),
        )
        tmp = self.head_path.with_name(HEAD_FILE + ".tmp")
        with tmp.open("wb") as f:
            f.write(canonical(seal.to_json()) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _tail(self, fd: int) -> ChainHead:
        st = os.fstat(fd)
        if self._cached is not None and self._cached[:2] == (st.st_ino, st.st_size):
            return self._cached[2]
        if st.st_size == 0:
            if self.head_path.exists():
                raise AuditError(
                    f"{self.path} is empty but {HEAD_FILE} seals records; run `facestream audit verify`"
                )
            return ChainHead.start("g-" + uuid.uuid4().hex[:16])
        last = _last_line(fd, st.st_size)
        rec = parse_record(last)
        if isinstance(rec, str):
            raise AuditError(
                f"{self.path}: the last record is damaged ({rec}); run `facestream audit verify`"
            )
        return head_after(rec)

    def _last_is_checkpoint(self, fd: int) -> bool:
        rec = parse_record(_last_line(fd, os.fstat(fd).st_size))
        return isinstance(rec, dict) and rec["action"] == CHECKPOINT

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """The log's fd, exclusively locked against every other appender on this machine."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot open the audit log ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock


def _last_line(fd: int, size: int) -> bytes:
    """The last complete line, without its newline; the log must end with one."""
    if os.pread(fd, 1, size - 1) != b"\n":
        raise AuditError("the audit log ends in an incomplete record; run `facestream audit verify`")
    buf, pos = b"", size - 1
    while pos > 0:
        step = min(4096, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n")
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


def read_verified(gallery_dir: Path, keys: KeyRing) -> tuple[Verdict, list[AuditRecord]]:
    """Every record of a log that verifies, read once (what is verified is what is returned);
    AuditError naming the first bad record otherwise."""
    path, head_path = gallery_dir / LOG_FILE, gallery_dir / HEAD_FILE
    data = path.read_bytes() if path.exists() else b""
    verdict = verify_file_bytes(data, head_path.read_bytes() if head_path.exists() else None, keys)
    if verdict.problem is not None:
        raise AuditError(f"audit log {path} fails verification at {verdict.problem}")
    records = []
    for line in data.splitlines():
        rec = parse_record(line)
        assert isinstance(rec, dict)  # verified above
        records.append(AuditRecord.from_json(rec))
    return verdict, records


def open_audit_log(gallery_dir: Path, settings: AuditSettings) -> AuditLog:
    """The embedded mode's audit log: `audit.log` in the gallery directory, signed as `settings`
    say (a command's: `settings_from(args, AuditSettings)`; code without args: `AuditSettings()`)."""
    gallery_dir.mkdir(parents=True, exist_ok=True)
    return AuditLog(gallery_dir / LOG_FILE, settings=settings)
