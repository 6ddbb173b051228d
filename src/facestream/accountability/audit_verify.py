"""Finding the first record of an audit log that is not what was written.

Checked for every record, in order, stopping at the first failure so the answer points at
one place: the line is complete and canonical JSON with exactly the expected fields; its
`seq` follows the previous one (a gap is a deletion, a repeat or a step back is an insertion
or a reordering); its `prev` is the previous record's hash; its own `hash` is right (a
changed byte); a checkpoint's signature verifies with a known public key. At the end the
file log's signed head must seal exactly the last record, which is what reveals a tail
cut off after the last checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from facestream.accountability.audit_chain import (
    ACTION_RE,
    CHECKPOINT,
    FIELDS,
    FORMAT_VERSION,
    HEX64_RE,
    SYSTEM_ACTOR,
    SYSTEM_ROLE,
    ChainHead,
    canonical,
    checkpoint_payload,
    genesis_hash,
    head_payload,
    record_hash,
    unb64,
)
from facestream.accountability.audit_keys import KeyRing


@dataclass(frozen=True, slots=True)
class Problem:
    """The first bad record: `line` is 1-based in the file (the offset in a topic)."""

    line: int
    seq: int | None
    reason: str

    def __str__(self) -> str:
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"line {self.line}{seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verdict:
    chain: str | None
    records: int
    checkpoints: int
    last: ChainHead | None
    key_ids: tuple[str, ...]
    unsealed: int
    """records after the last signature (checkpoint or head seal); only a topic can have any"""
    problem: Problem | None = None
    first_seq: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class SignedHead:
    chain: str
    seq: int
    hash: str
    at_ms: int
    key_id: str
    signature: str

    def payload(self) -> bytes:
        return head_payload(self.chain, self.seq, self.hash, self.at_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "seq": self.seq,
            "hash": self.hash,
            "at_ms": self.at_ms,
            "key_id": self.key_id,
            "signature": self.signature,
        }


def parse_head(data: bytes) -> SignedHead | str:
    """The head seal, or why it cannot be read."""
    try:
        obj = json.loads(data)
        if canonical(obj) + b"\n" != data:
            return "audit.head is not in canonical form: it was edited"
        head = SignedHead(
            str(obj["chain"]),
            int(obj["seq"]),
            str(obj["hash"]),
            int(obj["at_ms"]),
            str(obj["key_id"]),
            str(obj["signature"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: "[[[..." (tests/fuzz)
        return "audit.head is not a valid head seal"
    return head


def _types_ok(rec: Mapping[str, Any]) -> str | None:
    """Why the record's fields are malformed, or None."""
    if set(rec) != FIELDS:
        missing, extra = sorted(FIELDS - set(rec)), sorted(set(rec) - FIELDS)
        return f"fields differ from the record format (missing {missing}, unexpected {extra})"
    ints = ("v", "seq", "at_ms")
    if any(not isinstance(rec[k], int) or isinstance(rec[k], bool) for k in ints):
        return "v, seq and at_ms must be integers"
    if rec["v"] != FORMAT_VERSION:
        return f"unknown format version {rec['v']}"
    if any(not isinstance(rec[k], str) for k in ("chain", "actor", "role", "action", "prev", "hash")):
        return "chain, actor, role, action, prev and hash must be strings"
    if not (rec["authorisation_id"] is None or isinstance(rec["authorisation_id"], str)):
        return "authorisation_id must be a string or null"
    if not isinstance(rec["objects"], dict):
        return "objects must be an object"
    if not ACTION_RE.match(rec["action"]):
        return f"action {rec['action']!r} is not a dotted name"
    if not HEX64_RE.match(rec["prev"]) or not HEX64_RE.match(rec["hash"]):
        return "prev and hash must be 64 lower-case hex digits"
    return None


def parse_record(raw: bytes) -> dict[str, Any] | str:
    """A record from its line (no newline), or why the line is not one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: "[[[..." (tests/fuzz)
        return "not a JSON record (changed or cut)"
    if not isinstance(rec, dict):
        return "not a JSON record"
    why = _types_ok(rec)
    if why:
        return why
    try:
        if canonical(rec) != raw:
            return "not in canonical form: the line was edited"
    except ValueError:
        return "holds a value the log never writes"
    return rec


class ChainVerifier:
    """Feed one chain's records in order; it stops at the first problem."""

    def __init__(self, keys: KeyRing, *, late_start_ok: bool = False, seal_at: int | None = None) -> None:
        self._keys = keys
        self._late_start_ok = late_start_ok
        self._seal_at = seal_at
        self.sealed_hash: str | None = None
        self.head: ChainHead | None = None
        self.first_seq = 0
        self.records = 0
        self.checkpoints = 0
        self.since_signature = 0
        self.key_ids: set[str] = set()
        self.problem: Problem | None = None

    def feed(self, raw: bytes, where: int) -> Problem | None:
        if self.problem is None:
            self.problem = self._check(raw, where)
        return self.problem

    def _check(self, raw: bytes, where: int) -> Problem | None:
        rec = parse_record(raw)
        if isinstance(rec, str):
            return Problem(where, None, rec)
        seq = int(rec["seq"])
        if self.head is None:
            if seq != 0 and not self._late_start_ok:
                return Problem(
                    where, seq, f"the log starts at seq {seq}, not 0: earlier records were removed"
                )
            expected_prev = genesis_hash(rec["chain"]) if seq == 0 else rec["prev"]
            self.first_seq = seq
        else:
            if rec["chain"] != self.head.chain:
                return Problem(where, seq, f"belongs to chain {rec['chain']}, not {self.head.chain}: spliced")
            if seq != self.head.seq + 1:
                return Problem(where, seq, _seq_reason(self.head.seq + 1, seq))
            expected_prev = self.head.hash
        if rec["prev"] != expected_prev:
            return Problem(
                where, seq, "prev does not match the previous record's hash: the chain is broken here"
            )
        if record_hash(rec) != rec["hash"]:
            return Problem(where, seq, "hash mismatch: the record was changed")
        if rec["action"] == CHECKPOINT:
            why = self._checkpoint(rec)
            if why:
                return Problem(where, seq, why)
        else:
            self.since_signature += 1
        self.head = ChainHead(rec["chain"], seq, rec["hash"])
        self.records += 1
        if seq == self._seal_at:
            self.sealed_hash = rec["hash"]
        return None

    def _checkpoint(self, rec: Mapping[str, Any]) -> str | None:
        if rec["actor"] != SYSTEM_ACTOR or rec["role"] != SYSTEM_ROLE:
            return "a checkpoint not written by the log itself"
        objects = rec["objects"]
        kid, sig = objects.get("key_id"), objects.get("signature")
        if not isinstance(kid, str) or not isinstance(sig, str):
            return "checkpoint without key_id and signature"
        try:
            signature = unb64(sig)
        except ValueError:
            return "checkpoint signature is not base64"
        why = self._keys.verify(kid, signature, checkpoint_payload(rec["chain"], rec["seq"], rec["prev"]))
        if why:
            return f"forged or damaged checkpoint: {why}"
        self.checkpoints += 1
        self.since_signature = 0
        self.key_ids.add(kid)
        return None

    def verdict(self, problem: Problem | None = None, unsealed: int | None = None) -> Verdict:
        return Verdict(
            chain=self.head.chain if self.head else None,
            records=self.records,
            checkpoints=self.checkpoints,
            last=self.head,
            key_ids=tuple(sorted(self.key_ids)),
            unsealed=self.since_signature if unsealed is None else unsealed,
            problem=self.problem or problem,
            first_seq=self.first_seq,
        )


def _seq_reason(expected: int, got: int) -> str:
    if got > expected:
        return f"seq {expected} expected: {got - expected} record(s) missing here (deleted)"
    return f"seq {expected} expected, found {got} again or earlier: a record was inserted or moved here"


def verify_file_bytes(data: bytes, head_data: bytes | None, keys: KeyRing) -> Verdict:
    """Verify a file log (its bytes) against its signed head seal (None when the seal is missing)."""
    head = parse_head(head_data) if head_data is not None else None
    verifier = ChainVerifier(keys, seal_at=head.seq if isinstance(head, SignedHead) else None)
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for number, raw in enumerate(complete, start=1):
        if verifier.feed(raw, number):
            return verifier.verdict()
    if tail:
        return verifier.verdict(Problem(len(complete) + 1, None, "incomplete last record: the log was cut"))
    problem = _check_head(head, verifier, keys)
    if problem is not None:
        if isinstance(head, SignedHead):
            verifier.key_ids.add(head.key_id)
        return verifier.verdict(problem)
    if isinstance(head, SignedHead):
        verifier.key_ids.add(head.key_id)
    return verifier.verdict(unsealed=0)


def _check_head(head: SignedHead | str | None, v: ChainVerifier, keys: KeyRing) -> Problem | None:
    last = v.head
    end = Problem(v.records + 1, (last.seq + 1) if last else 0, "")
    if head is None:
        if last is None:
            return None
        return Problem(v.records, last.seq, "audit.head is missing: the end of the log is not sealed")
    if isinstance(head, str):
        return Problem(end.line, end.seq, head)
    try:
        signature = unb64(head.signature)
    except ValueError:
        return Problem(end.line, end.seq, "audit.head signature is not base64")
    why = keys.verify(head.key_id, signature, head.payload())
    if why:
        return Problem(end.line, end.seq, f"audit.head is forged or damaged: {why}")
    if last is None:
        return Problem(1, 0, f"the log is empty but its signed head seals seq {head.seq}: records removed")
    if head.chain != last.chain:
        return Problem(end.line, end.seq, "audit.head seals another log (chain differs)")
    if head.seq > last.seq:
        removed = head.seq - last.seq
        return Problem(
            end.line,
            end.seq,
            f"the log ends at seq {last.seq} but its signed head seals seq {head.seq}: "
            f"{removed} record(s) removed from the end",
        )
    if head.seq < last.seq:
        return Problem(
            head.seq + 2 - v.first_seq,
            head.seq + 1,
            f"records after the signed head (seq {head.seq}) were added without the signing key",
        )
    if v.sealed_hash != head.hash:
        return Problem(v.records, last.seq, "the log was rewritten: its last record is not the one sealed")
    return None


def verify_chains(
    records: Iterable[tuple[int, bytes]], keys: KeyRing, *, late_start_ok: bool
) -> list[Verdict]:
    """Verify a topic's records (offset, value), one chain per writer; a bad record stops its chain."""
    verifiers: dict[str, ChainVerifier] = {}
    for offset, raw in records:
        rec = parse_record(raw)
        chain = rec["chain"] if isinstance(rec, dict) else "?"
        verifier = verifiers.setdefault(chain, ChainVerifier(keys, late_start_ok=late_start_ok))
        verifier.feed(raw, offset)
    return [v.verdict() for _, v in sorted(verifiers.items())]
