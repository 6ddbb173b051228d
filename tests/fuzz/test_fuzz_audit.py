"""Fuzzing the audit log readers: whatever the file, the head seal or the topic holds, the verifier
returns a verdict (never a traceback), an intact log still verifies, and the plain reader
(`AuditLog.records`) raises nothing but AuditError.

Seeds are a real log written and signed by AuditLog; mutations are byte edits of it, and whole
records whose fields hold any JSON value.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from facestream.accountability.audit import Actor, AuditLog
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.audit_verify import (
    SignedHead,
    Verdict,
    parse_head,
    parse_record,
    verify_chains,
    verify_file_bytes,
)
from facestream.errors import AuditError
from tests.fixtures.audit import AuditKey, StepClock, make_key
from tests.fuzz.strategies import fuzz, json_values, mutated, near


@cache
def seed() -> tuple[bytes, bytes, AuditKey]:
    """A signed log of 12 records (with checkpoints), its head seal, and the key."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-audit-"))
    key = make_key(root)
    log = AuditLog(
        root / "audit.log",
        settings=AuditSettings(audit_checkpoint_every=4),
        signer=key.signer,
        clock=StepClock(1_800_000_000_000, 1000),
    )
    for i in range(9):
        log.append(
            actor=Actor(f"user{i % 3}", "officer"),
            action=("gallery.enroll", "identify.run", "candidate.open")[i % 3],
            authorisation_id=f"auth_{i % 2:016x}",
            objects={"identity": "Jane Roe", "n": i, "score": 0.5 + i / 100},
        )
    return (root / "audit.log").read_bytes(), (root / "audit.head").read_bytes(), key


def verdict_of(data: bytes, head: bytes | None) -> Verdict:
    verdict = verify_file_bytes(data, head, seed()[2].ring)
    assert isinstance(verdict, Verdict)
    assert verdict.ok or str(verdict.problem)
    return verdict


def records_or_audit_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.log"
        path.write_bytes(data)
        try:
            list(AuditLog(path).records())
        except AuditError as exc:
            assert str(exc)


def test_the_seed_log_verifies() -> None:
    data, head, _ = seed()
    assert verdict_of(data, head).ok
    assert data.count(b"\n") == 12


@fuzz(500)
@given(data=st.data())
def test_mutated_logs_get_a_verdict(data: st.DataObject) -> None:
    log, head, _ = seed()
    changed = data.draw(mutated(log))
    verdict = verdict_of(changed, head)
    if changed != log:
        assert not verdict.ok  # any edit of a sealed log is found
    records_or_audit_error(changed)


@fuzz(300)
@given(data=st.data())
def test_mutated_head_seals_get_a_verdict(data: st.DataObject) -> None:
    log, head, _ = seed()
    changed = data.draw(st.one_of(mutated(head), st.just(b"[" * 100_000)))
    verdict = verdict_of(log, changed)
    parsed = parse_head(changed)
    assert isinstance(parsed, SignedHead | str)
    if changed != head:
        assert not verdict.ok


@fuzz(500)
@given(data=st.data())
def test_records_with_any_field_values(data: st.DataObject) -> None:
    log, head, _ = seed()
    lines = log.split(b"\n")[:-1]
    at = data.draw(st.integers(0, len(lines) - 1))
    record = json.loads(lines[at])
    forged = data.draw(near(record, json_values))
    raw = json.dumps(forged, separators=(",", ":")).encode()
    parsed = parse_record(raw)
    assert isinstance(parsed, dict | str)
    changed = b"\n".join([*lines[:at], raw, *lines[at + 1 :]]) + b"\n"
    if forged != record:
        assert not verdict_of(changed, head).ok
    records_or_audit_error(changed)


@fuzz(400)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=120),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000, b"1e999", b"\xef\xbb\xbf{}"]),
        ),
        max_size=6,
    )
)
def test_topic_records_of_any_bytes(values: list[bytes]) -> None:
    log = seed()[0].split(b"\n")[:-1]
    records = list(enumerate([*log[:3], *values]))
    verdicts = verify_chains(records, seed()[2].ring, late_start_ok=True)
    assert all(isinstance(v, Verdict) for v in verdicts)
    for _, raw in records:
        assert isinstance(parse_record(raw), dict | str)
