"""`facestream report`: the transparency report (from the audit log) and the DPIA (from the configuration)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.audit import add_state_flags, key_ring, state_dir
from facestream.errors import ConfigError


def register(sub: Any) -> None:
    from facestream.accountability.roles import add_actor_flag

    p = sub.add_parser("report", help="transparency report and DPIA")
    rsub = p.add_subparsers(
        dest="report_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    tr = rsub.add_parser(
        "transparency",
        help="counts per authorisation over a period, from the verified audit log (role auditor)",
        description="Aggregate counts per authorisation (searches, candidates, confirmed, rejected, "
        "expired) with case reference, purpose and validity; no personal data. Computed only from "
        "the audit log, which must verify first. Times without an offset are UTC.",
    )
    add_state_flags(tr)
    tr.add_argument("--from", dest="from_", required=True, metavar="ISO8601", help="start of the period")
    tr.add_argument("--to", required=True, metavar="ISO8601", help="end of the period (exclusive)")
    tr.add_argument("--format", choices=("json", "html"), default="json", help="output format")
    tr.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    tr.add_argument(
        "--public-key",
        dest="public_keys",
        action="append",
        type=Path,
        metavar="PATH",
        help="public key(s) to verify the log with (default: env FACESTREAM_AUDIT_PUBLIC_KEY, config "
        "file audit.audit_public_key, else audit.pub in the gallery)",
    )
    add_actor_flag(tr)
    add_settings(tr, AUDIT_SIGNING)  # the export is recorded, signed
    tr.set_defaults(handler=run_transparency)

    dp = rsub.add_parser(
        "dpia",
        help="the DPIA template filled from this deployment's configuration (role operator or auditor)",
        description="Fill docs/dpia-template.md from the settings (environment, --config file), topic "
        "retention, authorisations, roles, suspension rules, models and the audit log. Sections marked "
        "TO BE COMPLETED are left for a person.",
    )
    add_state_flags(dp)
    dp.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    dp.add_argument(
        "--public-key", dest="public_keys", action="append", type=Path, metavar="PATH", help=argparse.SUPPRESS
    )
    add_actor_flag(dp)
    add_settings(dp, AUDIT_SIGNING)  # described, and signs the export's record
    dp.set_defaults(handler=run_dpia)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {output}: {exc.strerror}") from None


def run_transparency(args: argparse.Namespace) -> int:
    from facestream.accountability.audit import LOG_FILE, open_audit_log, read_verified
    from facestream.accountability.clock import parse_instant
    from facestream.accountability.report import LogState, to_html, transparency
    from facestream.accountability.roles import resolve_actor

    directory = state_dir(args)
    actor = resolve_actor(directory, "auditor", args.actor)
    lo, hi = parse_instant(args.from_, "--from"), parse_instant(args.to, "--to")
    if hi <= lo:
        raise ConfigError("--to must be after --from")
    verdict, records = read_verified(directory, key_ring(args, directory))
    last = verdict.last
    state = LogState(
        str(directory / LOG_FILE),
        verdict.chain,
        verdict.records,
        last.seq if last else None,
        last.hash if last else None,
    )
    report = transparency(records, lo, hi, state)
    text = to_html(report) if args.format == "html" else json.dumps(report, indent=2, sort_keys=True) + "\n"
    # Recorded before it leaves: an export the log cannot record does not happen.
    open_audit_log(directory, settings_from(args, AuditSettings)).append(
        actor=actor,
        action="report.export",
        objects={
            "report": "transparency",
            "format": args.format,
            "from_ms": lo,
            "to_ms": hi,
            "log_last_seq": state.last_seq,
            "authorisations": len(report["authorisations"]),
        },
    )
    _write(text, args.output)
    return 0


def run_dpia(args: argparse.Namespace) -> int:
    from facestream.accountability.audit import open_audit_log
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.clock import now_ms
    from facestream.accountability.dpia import Deployment, render
    from facestream.accountability.roles import RoleStore, resolve_actor_any
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.settings import PhotoSettings, PolicySettings
    from facestream.settings import (
        DetectorSettings,
        EmbedderSettings,
        KafkaSettings,
        MatcherSettings,
        SamplerSettings,
    )
    from facestream.transport.topics import catalogue

    directory = state_dir(args)
    actor = resolve_actor_any(directory, ("operator", "auditor"), args.actor)
    detector, embedder = settings_from(args, DetectorSettings), settings_from(args, EmbedderSettings)
    audit, photos = settings_from(args, AuditSettings), settings_from(args, PhotoSettings)
    deployment = Deployment(
        state_dir=directory,
        settings=(
            settings_from(args, MatcherSettings),
            settings_from(args, SamplerSettings),
            detector,
            settings_from(args, PolicySettings),
            audit,
        ),
        topics=catalogue(settings_from(args, KafkaSettings).topic_prefix),
        authorisations=list(AuthorisationStore(directory).all().values()),
        roles=RoleStore(directory).assignments(),
        rules=RuleStore(directory).all(),
        audit=audit,
        keys=key_ring(args, directory),
        model_refs={
            "detector": (detector.detector_model, detector.detector_model_sha256),
            "landmarks": (detector.landmarker_model, detector.landmarker_model_sha256),
            "embedder": (embedder.embedder_model, embedder.embedder_model_sha256),
        },
        photo_key_configured=photos.photo_key is not None or photos.photo_key_file is not None,
        now_ms=now_ms(),
    )
    text = render(deployment)
    open_audit_log(directory, audit).append(actor=actor, action="report.export", objects={"report": "dpia"})
    _write(text, args.output)
    return 0
