"""The audit log's wire format: canonical JSON lines, hash-chained, with signed checkpoints.

One record per line. A line is the record's canonical JSON (sorted keys, no spaces, ASCII
only), so re-serialising a parsed line must give back the very same bytes: any edited byte,
even one that leaves valid JSON behind, shows. Each record carries the hash of the one
before it (`prev`) and its own `hash` (sha256 of its canonical JSON without `hash`), so a
record cannot be removed, inserted or moved without breaking the chain at that place.

A hash chain alone can be rebuilt by whoever can write the file; what they cannot forge is
an Ed25519 signature. So every `checkpoint_every` records a checkpoint record signs the
chain's head, and the file log also keeps a signed seal of its last record (`audit.head`),
which is what makes a truncated tail visible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from facestream.accountability.audit_keys import Signer
from facestream.errors import AuditError

FORMAT_VERSION = 1
CHECKPOINT = "audit.checkpoint"
SYSTEM_ACTOR = "facestream"
SYSTEM_ROLE = "system"

FIELDS = frozenset(
    {"v", "chain", "seq", "at_ms", "actor", "role", "action", "authorisation_id", "objects", "prev", "hash"}
)
ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")

MAX_TEXT = 512
"""Longest string an object may hold: ids and labels fit; an encoded image does not."""
MAX_LIST = 1000
MAX_FLOATS = 8
"""A list with more floats than this looks like a vector, and vectors never enter the log."""


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The one byte form of a record: what is hashed, signed and stored."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def record_hash(body: Mapping[str, Any]) -> str:
    """sha256 of the record without its own `hash` field."""
    return hashlib.sha256(canonical({k: v for k, v in body.items() if k != "hash"})).hexdigest()


def genesis_hash(chain: str) -> str:
    """The `prev` of a chain's first record: binds the chain to its id, so logs cannot be spliced."""
    return hashlib.sha256(b"facestream-audit-genesis\n" + chain.encode()).hexdigest()


def checkpoint_payload(chain: str, seq: int, prev: str) -> bytes:
    """What a checkpoint at `seq` signs: the hash of every record before it."""
    return f"facestream-audit-checkpoint:v1\n{chain}\n{seq}\n{prev}".encode()


def head_payload(chain: str, seq: int, hash_: str, at_ms: int) -> bytes:
    """What the file log's head seal signs: its last record, and when it was sealed."""
    return f"facestream-audit-head:v1\n{chain}\n{seq}\n{hash_}\n{at_ms}".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a chain stands: the next record gets `seq + 1` and `prev = hash`."""

    chain: str
    seq: int
    hash: str

    @classmethod
    def start(cls, chain: str) -> ChainHead:
        return cls(chain, -1, genesis_hash(chain))


def check_objects(objects: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    """Objects hold ids, labels and counts only; anything that could be a face or a vector is refused."""
    out: dict[str, Any] = {}
    for key, value in objects.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise AuditError(f"audit objects: bad key {key!r}")
        out[key] = _check_value(key, value, depth)
    return out


def _check_value(key: str, value: Any, depth: int) -> Any:
    if isinstance(value, list | tuple):
        if len(value) > MAX_LIST:
            raise AuditError(f"audit objects: {key} has more than {MAX_LIST} items")
        if sum(isinstance(v, float) for v in value) > MAX_FLOATS:
            raise AuditError(f"audit objects: {key} looks like a vector; vectors never enter the audit log")
        return [_nested(key, v, depth) if isinstance(v, Mapping) else _check_scalar(key, v) for v in value]
    if isinstance(value, Mapping):
        return _nested(key, value, depth)
    return _check_scalar(key, value)


def _check_scalar(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError(f"audit objects: {key} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise AuditError(
                f"audit objects: {key} is longer than {MAX_TEXT} characters (ids and labels only)"
            )
        return value
    raise AuditError(
        f"audit objects: {key} is a {type(value).__name__}; only ids, labels and counts are recorded"
    )


def _nested(key: str, value: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth >= 2:
        raise AuditError(f"audit objects: {key} is nested too deeply")
    return check_objects(value, depth + 1)


def build_record(
    head: ChainHead,
    *,
    at_ms: int,
    actor: str,
    role: str,
    action: str,
    authorisation_id: str | None,
    objects: Mapping[str, Any],
) -> dict[str, Any]:
    """The next record of the chain, hashed; raises AuditError on anything the log must not hold."""
    if not ACTION_RE.match(action):
        raise AuditError(f"audit action {action!r} is not a dotted lower-case name")
    if not actor or len(actor) > MAX_TEXT or not role or len(role) > 64:
        raise AuditError("audit record needs an actor name and a role")
    if authorisation_id is not None and (not authorisation_id or len(authorisation_id) > MAX_TEXT):
        raise AuditError("audit authorisation_id must be a short id")
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "chain": head.chain,
        "seq": head.seq + 1,
        "at_ms": at_ms,
        "actor": actor,
        "role": role,
        "action": action,
        "authorisation_id": authorisation_id,
        "objects": check_objects(objects),
        "prev": head.hash,
    }
    body["hash"] = record_hash(body)
    return body


def head_after(record: Mapping[str, Any]) -> ChainHead:
    return ChainHead(str(record["chain"]), int(record["seq"]), str(record["hash"]))


def checkpoint_record(head: ChainHead, signer: Signer, at_ms: int) -> dict[str, Any]:
    """The record that signs `head` (the hash of every record before it), next in the same chain."""
    signature = signer.sign(checkpoint_payload(head.chain, head.seq + 1, head.hash))
    return build_record(
        head,
        at_ms=at_ms,
        actor=SYSTEM_ACTOR,
        role=SYSTEM_ROLE,
        action=CHECKPOINT,
        authorisation_id=None,
        objects={"key_id": signer.key_id, "signature": b64(signature)},
    )
