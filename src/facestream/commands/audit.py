"""`facestream audit`: verify the tamper-evident audit log, and show its records (role auditor)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from facestream.cliargs import OneLineParser, add_config_flag, add_settings, settings_from
from facestream.commands.output import emit, iso_ms
from facestream.errors import ConfigError

log = logging.getLogger("facestream.audit")


def add_state_flags(parser: argparse.ArgumentParser) -> None:
    """--gallery / --state-dir: where the audit log lives (the accountability state directory), and
    --config, whose gallery and accountability sections may say it instead."""
    add_config_flag(parser)
    parser.add_argument(
        "--gallery",
        dest="gallery",
        default=None,
        metavar="PATH",
        help="gallery directory holding audit.log (default: ./gallery; env FACESTREAM_GALLERY)",
    )
    parser.add_argument(
        "--state-dir",
        dest="state_dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="accountability state directory, when not the gallery (env FACESTREAM_STATE_DIR)",
    )


def state_dir(args: argparse.Namespace) -> Path:
    from facestream.accountability.settings import AccountabilitySettings, state_dir_of
    from facestream.settings import GallerySettings

    path = state_dir_of(settings_from(args, GallerySettings), settings_from(args, AccountabilitySettings))
    if not path.is_dir():
        raise ConfigError(f"{path}: no such gallery/state directory")
    return path


def register(sub: Any) -> None:
    from facestream.accountability.roles import add_actor_flag
    from facestream.settings import KafkaSettings

    p = sub.add_parser("audit", help="verify and read the tamper-evident audit log (role auditor)")
    asub = p.add_subparsers(
        dest="audit_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    verify = asub.add_parser(
        "verify",
        help="check the hash chain, checkpoint signatures and head seal; exit 1 naming the first bad record",
        description="Exit 0 when the log is intact; otherwise print the first bad record (line, seq, why) "
        "and exit 1. With --kafka, verify the audit topic instead, one chain per writer.",
    )
    add_state_flags(verify)
    verify.add_argument(
        "--public-key",
        dest="public_keys",
        action="append",
        type=Path,
        default=None,
        metavar="PATH",
        help="PEM public key(s) to verify with, from a trusted place (repeatable; env "
        "FACESTREAM_AUDIT_PUBLIC_KEY, config file audit.audit_public_key; default: audit.pub beside "
        "the log, trusted on first use)",
    )
    verify.add_argument("--kafka", action="store_true", help="verify the audit topic on the Kafka cluster")
    add_settings(verify, KafkaSettings)
    add_actor_flag(verify)
    verify.set_defaults(handler=run_verify)

    show = asub.add_parser("show", help="print audit records as JSON lines, filtered")
    add_state_flags(show)
    show.add_argument("--action", help="exact action (gallery.enroll) or a prefix ending in '.' (review.)")
    show.add_argument("--authorisation", help="only records under this authorisation id")
    show.add_argument("--by", help="only records by this actor")
    show.add_argument("--from", dest="from_", metavar="ISO8601", help="records at or after this time")
    show.add_argument("--to", metavar="ISO8601", help="records before this time")
    add_actor_flag(show)
    show.set_defaults(handler=run_show)


def key_ring(args: argparse.Namespace, directory: Path | None) -> Any:
    from facestream.accountability.audit_keys import PUBLIC_KEYS_FILE, AuditSettings, KeyRing, load_key_ring

    given: list[Path] = list(args.public_keys or [])
    configured = settings_from(args, AuditSettings).audit_public_key  # env, else the --config file
    if not given and configured is not None:
        given = [configured]
    if given:
        return load_key_ring(given, "given")
    if directory is not None and (directory / PUBLIC_KEYS_FILE).exists():
        log.warning(
            "verifying with %s from the gallery itself: whoever can rewrite the log can replace it too; "
            "pass --public-key from a trusted copy",
            directory / PUBLIC_KEYS_FILE,
        )
        return load_key_ring([directory / PUBLIC_KEYS_FILE], "gallery")
    return KeyRing({}, "none")


def run_verify(args: argparse.Namespace) -> int:
    from facestream.accountability.roles import resolve_actor

    directory = state_dir(args)
    resolve_actor(directory, "auditor", args.actor)
    if args.kafka:
        return _verify_kafka(args)
    from facestream.accountability.audit import HEAD_FILE, LOG_FILE
    from facestream.accountability.audit_verify import verify_file_bytes

    keys = key_ring(args, directory)
    log_path, head_path = directory / LOG_FILE, directory / HEAD_FILE
    data = log_path.read_bytes() if log_path.exists() else b""
    head = head_path.read_bytes() if head_path.exists() else None
    verdict = verify_file_bytes(data, head, keys)
    emit(_verdict_json(verdict, str(log_path), keys.source))
    if verdict.problem is not None:
        sys.stderr.write(f"facestream: audit log {log_path} fails verification at {verdict.problem}\n")
        return 1
    return 0


def _verify_kafka(args: argparse.Namespace) -> int:
    from facestream.accountability.audit_kafka import verify_topic
    from facestream.settings import KafkaSettings
    from facestream.transport.topics import AUDIT

    kafka = settings_from(args, KafkaSettings)
    keys = key_ring(args, None)
    if not keys.keys:
        raise ConfigError(
            "--kafka needs --public-key (or FACESTREAM_AUDIT_PUBLIC_KEY, or audit.audit_public_key)"
        )
    verdicts = verify_topic(kafka, keys)
    topic = kafka.topic_prefix + AUDIT
    for verdict in verdicts:
        emit(_verdict_json(verdict, topic, keys.source))
    bad = [v for v in verdicts if v.problem is not None]
    for verdict in bad[:1]:
        sys.stderr.write(
            f"facestream: audit topic {topic} chain {verdict.chain} fails verification at offset "
            f"{verdict.problem}\n"
        )
    return 1 if bad else 0


def _verdict_json(verdict: Any, where: str, keys_from: str) -> dict[str, Any]:
    problem = verdict.problem
    return {
        "log": where,
        "ok": verdict.ok,
        "chain": verdict.chain,
        "records": verdict.records,
        "checkpoints": verdict.checkpoints,
        "first_seq": verdict.first_seq,
        "last_seq": verdict.last.seq if verdict.last else None,
        "last_hash": verdict.last.hash if verdict.last else None,
        "unsealed": verdict.unsealed,
        "key_ids": list(verdict.key_ids),
        "keys_from": keys_from,
        "first_bad": (
            None if problem is None else {"line": problem.line, "seq": problem.seq, "reason": problem.reason}
        ),
    }


def action_matches(action: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    return action.startswith(wanted) if wanted.endswith(".") else action == wanted


def run_show(args: argparse.Namespace) -> int:
    from facestream.accountability.audit import LOG_FILE, AuditLog
    from facestream.accountability.clock import parse_instant
    from facestream.accountability.roles import resolve_actor

    directory = state_dir(args)
    resolve_actor(directory, "auditor", args.actor)
    lo = parse_instant(args.from_, "--from") if args.from_ else None
    hi = parse_instant(args.to, "--to") if args.to else None
    for rec in AuditLog(directory / LOG_FILE).records():  # read only: nothing is signed
        if not action_matches(rec.action, args.action):
            continue
        if args.authorisation is not None and rec.authorisation_id != args.authorisation:
            continue
        if args.by is not None and rec.actor != args.by:
            continue
        if (lo is not None and rec.at_ms < lo) or (hi is not None and rec.at_ms >= hi):
            continue
        emit(
            {
                "seq": rec.seq,
                "at": iso_ms(rec.at_ms),
                "at_ms": rec.at_ms,
                "actor": rec.actor,
                "role": rec.role,
                "action": rec.action,
                "authorisation_id": rec.authorisation_id,
                "objects": dict(rec.objects),
                "hash": rec.hash,
            }
        )
    return 0
