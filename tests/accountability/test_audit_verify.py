"""Tampering with the audit log in every way we can think of is found, at the first bad record."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from facestream.accountability.audit import Actor
from facestream.accountability.audit_chain import CHECKPOINT, canonical, record_hash
from facestream.accountability.audit_verify import Verdict, verify_file_bytes
from facestream.cli import main
from tests.fixtures.audit import AuditKey, AuditLogFactory, StepClock, make_key

EVERY = 5


@pytest.fixture
def written(make_audit_log: AuditLogFactory, audit_gallery: Path) -> tuple[bytes, bytes]:
    """A log of 22 records (4 checkpoints) and its head seal, as bytes."""
    log = make_audit_log(every=EVERY, clock=StepClock(1_800_000_000_000, 1000))
    people = ["Jane Roe", "John Doe", "Émile Zola"]
    for i in range(18):
        log.append(
            actor=Actor(f"user{i % 3}", "officer"),
            action=("gallery.enroll", "identify.run", "candidate.open")[i % 3],
            authorisation_id=f"auth_{i % 2:016x}",
            objects={"identity": people[i % 3], "n": i, "score": 0.5 + i / 100},
        )
    return (audit_gallery / "audit.log").read_bytes(), (audit_gallery / "audit.head").read_bytes()


def check(data: bytes, head: bytes | None, key: AuditKey) -> Verdict:
    return verify_file_bytes(data, head, key.ring)


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def rechain(lines: list[bytes], start: int) -> list[bytes]:
    """What an attacker without the key can do: recompute every seq, prev and hash from `start` on."""
    out = list(lines[:start])
    prev = json.loads(out[-1])["hash"] if out else None
    for i, line in enumerate(lines[start:], start=start):
        rec = json.loads(line)
        rec["seq"] = i
        if prev is not None:
            rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(canonical(rec))
    return out


def test_the_intact_log_verifies(written: tuple[bytes, bytes], audit_key: AuditKey) -> None:
    verdict = check(*written, audit_key)
    assert verdict.ok
    assert (verdict.records, verdict.checkpoints, verdict.unsealed) == (22, 4, 0)


@pytest.mark.slow  # about 7 s: every byte of the log
def test_every_flipped_byte_is_found_on_its_own_line(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    missed = []
    wrong_line = []
    for pos in range(len(data)):
        for mask in (0x01, 0x20):
            tampered = bytearray(data)
            tampered[pos] ^= mask
            verdict = check(bytes(tampered), head, audit_key)
            expected_line = data.count(b"\n", 0, pos) + 1
            if verdict.problem is None:
                missed.append((pos, mask))
            elif verdict.problem.line != expected_line:
                wrong_line.append((pos, mask, verdict.problem))
    assert missed == []
    assert wrong_line == []


def test_every_flipped_byte_of_the_head_seal_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    for pos in range(len(head)):
        tampered = bytearray(head)
        tampered[pos] ^= 0x01
        verdict = check(data, bytes(tampered), audit_key)
        assert verdict.problem is not None, pos


@pytest.mark.parametrize("index", [0, 1, 4, 10, 20])
def test_a_deleted_record_is_named_where_the_gap_is(
    written: tuple[bytes, bytes], audit_key: AuditKey, index: int
) -> None:
    data, head = written
    lines = lines_of(data)
    del lines[index]
    verdict = check(joined(lines), head, audit_key)
    assert verdict.problem is not None
    assert verdict.problem.line == index + 1
    assert "missing" in verdict.problem.reason or "starts at seq" in verdict.problem.reason


def test_deleting_the_last_record_is_found_by_the_head_seal(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    lines = lines_of(data)
    verdict = check(joined(lines[:-3]), head, audit_key)
    assert verdict.problem is not None
    assert verdict.problem.line == 20 and verdict.problem.seq == 19
    assert "3 record(s) removed from the end" in verdict.problem.reason


def test_a_tail_cut_after_a_checkpoint_and_its_seal_removed_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, _ = written
    lines = lines_of(data)
    last_checkpoint = max(i for i, line in enumerate(lines) if CHECKPOINT.encode() in line)
    verdict = check(joined(lines[: last_checkpoint + 1]), None, audit_key)
    assert verdict.problem is not None and "audit.head is missing" in verdict.problem.reason


def test_a_log_cut_mid_record_is_found(written: tuple[bytes, bytes], audit_key: AuditKey) -> None:
    data, head = written
    verdict = check(data[:-40], head, audit_key)
    assert verdict.problem is not None
    assert verdict.problem.line == 22 and "incomplete" in verdict.problem.reason


def test_an_emptied_log_with_its_seal_is_found(written: tuple[bytes, bytes], audit_key: AuditKey) -> None:
    verdict = check(b"", written[1], audit_key)
    assert verdict.problem is not None and "empty" in verdict.problem.reason


@pytest.mark.parametrize("index", [0, 3, 12, 21])
def test_a_copied_record_inserted_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey, index: int
) -> None:
    data, head = written
    lines = lines_of(data)
    lines.insert(index + 1, lines[index])
    verdict = check(joined(lines), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == index + 2
    assert "inserted or moved" in verdict.problem.reason


def test_an_inserted_record_with_a_rebuilt_chain_is_caught_by_the_next_checkpoint(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    lines = lines_of(data)
    forged = json.loads(lines[6])
    forged["objects"] = {"identity": "Someone Innocent", "n": 99}
    lines.insert(7, canonical(forged))
    verdict = check(joined(rechain(lines, 7)), head, audit_key)
    assert verdict.problem is not None
    next_checkpoint = next(i for i, line in enumerate(lines) if i > 7 and CHECKPOINT.encode() in line)
    assert verdict.problem.line == next_checkpoint + 1
    assert "forged or damaged checkpoint" in verdict.problem.reason


def test_an_edit_after_the_last_checkpoint_with_a_rebuilt_chain_is_caught_by_the_seal(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    lines = lines_of(data)
    rec = json.loads(lines[-1])
    rec["objects"] = {**rec["objects"], "n": 1000}
    lines[-1] = canonical(rec)
    verdict = check(joined(rechain(lines, len(lines) - 1)), head, audit_key)
    assert verdict.problem is not None and "rewritten" in verdict.problem.reason


def test_a_record_appended_without_the_key_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    lines = lines_of(data)
    extra = json.loads(lines[-1])
    extra["seq"] += 1
    extra["prev"] = extra["hash"]
    extra["hash"] = record_hash(extra)
    verdict = check(joined([*lines, canonical(extra)]), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == 23
    assert "without the signing key" in verdict.problem.reason


@pytest.mark.parametrize("index", [0, 5, 13, 20])
def test_swapped_records_are_found_at_the_first_of_them(
    written: tuple[bytes, bytes], audit_key: AuditKey, index: int
) -> None:
    data, head = written
    lines = lines_of(data)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    verdict = check(joined(lines), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == index + 1


def test_a_forged_checkpoint_signature_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey, tmp_path: Path
) -> None:
    """Re-sign a checkpoint with another key under the real key's id, and rebuild the chain after it."""
    data, head = written
    lines = lines_of(data)
    index = next(i for i, line in enumerate(lines) if CHECKPOINT.encode() in line)
    rec = json.loads(lines[index])
    rec["objects"]["signature"] = base64.b64encode(make_key(tmp_path, "mallory").private.sign(b"x")).decode()
    lines[index] = canonical(rec)
    verdict = check(joined(rechain(lines, index)), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == index + 1
    assert "does not verify" in verdict.problem.reason


def test_a_record_spliced_in_from_another_log_is_found(
    written: tuple[bytes, bytes], audit_key: AuditKey, make_audit_log: AuditLogFactory, tmp_path: Path
) -> None:
    data, head = written
    lines = lines_of(data)
    rec = json.loads(lines[8])
    rec["chain"] = "g-0000000000000000"
    rec["hash"] = record_hash(rec)
    lines[8] = canonical(rec)
    verdict = check(joined(lines), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == 9 and "spliced" in verdict.problem.reason


def test_whitespace_or_key_order_changes_are_edits_too(
    written: tuple[bytes, bytes], audit_key: AuditKey
) -> None:
    data, head = written
    lines = lines_of(data)
    pretty = json.dumps(json.loads(lines[2]), sort_keys=True).encode()  # same content, spaces added
    verdict = check(joined([*lines[:2], pretty, *lines[3:]]), head, audit_key)
    assert verdict.problem is not None and verdict.problem.line == 3 and "canonical" in verdict.problem.reason


def run_verify(
    gallery: Path, key: AuditKey, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object], str]:
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(
            main(["audit", "verify", "--gallery", str(gallery), "--public-key", str(key.public_file)])
        )
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), json.loads(out), err


def test_the_command_exits_0_when_intact_and_names_the_first_bad_record_otherwise(
    written: tuple[bytes, bytes], audit_gallery: Path, audit_key: AuditKey, capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = run_verify(audit_gallery, audit_key, capsys)
    assert (code, result["ok"], result["records"], result["keys_from"]) == (0, True, 22, "given")

    path = audit_gallery / "audit.log"
    lines = lines_of(path.read_bytes())
    index = next(i for i, line in enumerate(lines) if i > 5 and b"John Doe" in line)
    lines[index] = lines[index].replace(b"John Doe", b"John Dox")
    path.write_bytes(joined(lines))
    code, result, err = run_verify(audit_gallery, audit_key, capsys)
    assert code == 1 and result["ok"] is False
    assert result["first_bad"] == {
        "line": index + 1,
        "seq": index,
        "reason": "hash mismatch: the record was changed",
    }
    assert f"line {index + 1} (seq {index})" in err.strip().splitlines()[-1]

    del lines[index]
    path.write_bytes(joined(lines))
    code, result, err = run_verify(audit_gallery, audit_key, capsys)
    assert code == 1 and result["first_bad"]["line"] == index + 1  # type: ignore[index]
    assert "1 record(s) missing" in err


def test_the_command_refuses_an_actor_without_the_auditor_role(
    written: tuple[bytes, bytes], audit_gallery: Path, audit_key: AuditKey, capsys: pytest.CaptureFixture[str]
) -> None:
    from facestream.accountability.roles import RoleStore

    roles = RoleStore(audit_gallery)
    roles.grant("root", "otto", "operator")
    roles.grant("otto", "aude", "auditor")
    args = ["audit", "verify", "--gallery", str(audit_gallery), "--public-key", str(audit_key.public_file)]
    with pytest.raises(SystemExit) as refused:
        main([*args, "--actor", "otto"])
    assert refused.value.code == 1
    assert "auditor" in capsys.readouterr().err
    assert main([*args, "--actor", "aude"]) == 0
