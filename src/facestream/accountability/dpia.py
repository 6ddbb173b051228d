"""The DPIA, filled from the deployment's configuration (docs/dpia-template.md).

The tool fills in what it can know for certain — settings, retention, authorisations,
roles, suspension rules, models, the audit log's state — and leaves every judgement
(necessity, risks, residual risk, sign-off) to people, under markers it never removes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from facestream import __version__
from facestream.accountability.audit import HEAD_FILE, LOG_FILE
from facestream.accountability.audit_keys import AuditSettings, KeyRing, dev_key_path
from facestream.accountability.audit_verify import verify_file_bytes
from facestream.accountability.authorisations import Authorisation
from facestream.accountability.clock import iso
from facestream.accountability.rules import SuspensionRule
from facestream.env_names import env_name
from facestream.errors import ConfigError
from facestream.transport.topics import TopicSpec
from facestream.vision.models import BUILTIN_MODELS

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
HUMAN_MARKER = "TO BE COMPLETED"


def template_text() -> str:
    """The template shipped with the package (data/dpia-template.md is docs/dpia-template.md)."""
    return resources.files("facestream").joinpath("data/dpia-template.md").read_text(encoding="utf-8")


def fill(template: str, blocks: Mapping[str, str]) -> str:
    """Replace every {{name}}; a placeholder without a block, or a block without a place, is an error."""
    wanted = set(PLACEHOLDER.findall(template))
    missing, unused = wanted - set(blocks), set(blocks) - wanted
    if missing or unused:
        raise ConfigError(
            f"DPIA template and filler disagree: missing {sorted(missing)}, unused {sorted(unused)}"
        )
    return PLACEHOLDER.sub(lambda m: blocks[m.group(1)], template)


def cell(value: Any) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def duration(ms: int) -> str:
    if ms < 0:
        return "forever"
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000), ("seconds", 1000)):
        if ms >= size and ms % size == 0:
            count = ms // size
            return f"{count} {unit if count != 1 else unit[:-1]}"
    return f"{ms} ms"


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything the DPIA reads, gathered by the command (so this module stays testable)."""

    state_dir: Path
    settings: Sequence[BaseSettings]
    topics: Sequence[TopicSpec]
    authorisations: Sequence[Authorisation]
    roles: Mapping[str, frozenset[str]]
    rules: Sequence[SuspensionRule]
    audit: AuditSettings
    keys: KeyRing
    model_refs: Mapping[str, tuple[str, str | None]]
    """kind → (configured model, configured sha256)"""
    photo_key_configured: bool
    now_ms: int


def settings_block(models: Sequence[BaseSettings]) -> str:
    rows = []
    for model in models:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if "SecretStr" in str(field.annotation):
                value = "set" if value is not None else "not set"  # never the secret itself
            rows.append((name, value, field.description, env_name(type(model), name)))
    return table(("setting", "value", "meaning", "environment variable"), rows)


def retention_block(topics: Sequence[TopicSpec]) -> str:
    rows = [
        (f"`{t.name}`", t.holds, duration(t.retention_ms), duration(t.segment_ms), t.cleanup_policy)
        for t in topics
    ]
    return table(("topic", "holds", "retention", "segment", "cleanup"), rows)


def audit_block(d: Deployment) -> str:
    log_path, head_path = d.state_dir / LOG_FILE, d.state_dir / HEAD_FILE
    data = log_path.read_bytes() if log_path.exists() else b""
    verdict = verify_file_bytes(data, head_path.read_bytes() if head_path.exists() else None, d.keys)
    if d.audit.audit_key is not None or d.audit.audit_key_file is not None:
        key = "a configured Ed25519 key (from a secret)"
    elif dev_key_path(d.state_dir).exists():
        key = f"a **development** key beside the gallery ({dev_key_path(d.state_dir).name}): replace it"
    else:
        key = "not yet created (no record written)"
    state = "verifies" if verdict.ok else f"**FAILS verification** at {verdict.problem}"
    return "\n".join(
        (
            f"Audit log `{log_path}`: {verdict.records} records, {verdict.checkpoints} signed checkpoints; "
            f"the log {state} (public keys from: {d.keys.source}).",
            f"Records are hash-chained; every {d.audit.audit_checkpoint_every} records a checkpoint is "
            f"signed with {key}. In Kafka mode the records also go to the `audit` topic (table above).",
        )
    )


def models_block(refs: Mapping[str, tuple[str, str | None]]) -> str:
    rows = []
    for kind, (ref, sha) in refs.items():
        spec = BUILTIN_MODELS.get(ref)
        origin = f"built in, from {spec.package.name}@{spec.package.version}" if spec else "configured file"
        rows.append((kind, f"`{ref}`", origin, sha or (spec.sha256 if spec else None)))
    return table(("stage", "model", "origin", "sha256"), rows)


def authorisations_block(auths: Sequence[Authorisation], now_ms: int) -> str:
    if not auths:
        return "No authorisation has been granted: no one can be enrolled, nothing can match."
    rows = []
    for a in sorted(auths, key=lambda a: (a.granted_at_ms, a.id)):
        scope = ", ".join([*a.cameras, *(f"zone {z}" for z in a.zones)]) or "every camera"
        status = "active (in force)" if a.in_force_at(now_ms) else a.status
        rows.append(
            (
                f"`{a.id}`",
                a.case_ref,
                a.purpose,
                a.legal_basis,
                a.issued_by,
                f"{iso(a.valid_from_ms)} to {iso(a.valid_until_ms)}",
                scope,
                status,
            )
        )
    header = ("id", "case", "purpose", "legal basis", "issued by", "valid", "scope", "status")
    return table(header, rows)


def rules_block(rules: Sequence[SuspensionRule]) -> str:
    if not rules:
        return "No suspension rule is configured."
    rows = [
        (
            f"`{r.id}`",
            ", ".join([*r.cameras, *(f"zone {z}" for z in r.zones)]) or "every camera",
            iso(r.starts_at_ms),
            iso(r.ends_at_ms),
            r.reason,
        )
        for r in rules
    ]
    return table(("id", "where", "from", "until", "reason"), rows)


def roles_line(roles: Mapping[str, frozenset[str]]) -> str:
    if not roles:
        return (
            "- **Single-operator mode: NO separation of duties.** No role has been assigned, so the local "
            "user holds every role (each audit record says `...:single-operator`). Assign roles with "
            "`facestream roles grant` before any real use."
        )
    counts: dict[str, int] = {}
    for held in roles.values():
        for role in held:
            counts[role] = counts.get(role, 0) + 1
    listed = ", ".join(f"{role}: {counts[role]}" for role in sorted(counts))
    return (
        f"- Roles are separated and checked on every command ({listed} people); an authoriser cannot "
        "enroll, no one changes their own roles."
    )


def measures_block(d: Deployment) -> str:
    in_force = [a for a in d.authorisations if a.in_force_at(d.now_ms)]
    photo_key = "a configured key" if d.photo_key_configured else "a **development** key (replace it)"
    return "\n".join(
        (
            roles_line(d.roles),
            f"- Matching only under an active authorisation, in its time and place ({len(in_force)} in force "
            f"now, {len(d.authorisations)} on record); an ended one stops matching at once and its data "
            "is purged.",
            "- Two different reviewers must confirm a candidate before it becomes an alert; one rejection "
            "closes it.",
            f"- Suspension rules switch matching off by zone and time ({len(d.rules)} configured).",
            "- Faces that match nothing are dropped at the matcher and exist only in the short-retention "
            "topics (section 1.3).",
            f"- Enrollment photos are encrypted at rest (AES-GCM) with {photo_key}.",
            "- No age, gender, emotion or other attribute inference.",
            "- Every grant, revocation, enrollment, removal, search, candidate, review decision, export and "
            "configuration change is in the tamper-evident audit log; `facestream audit verify` checks it.",
            "- A transparency report of counts per authorisation: `facestream report transparency`.",
        )
    )


def render(d: Deployment, template: str | None = None) -> str:
    generated = (
        f"> Generated by facestream {__version__} at {iso(d.now_ms)} from the configuration of "
        f"`{d.state_dir}`. It reflects that configuration at that moment: regenerate it after any "
        f"change. Sections marked **{HUMAN_MARKER}** need a person."
    )
    blocks = {
        "generated": generated,
        "settings": settings_block(d.settings),
        "retention": retention_block(d.topics),
        "state_dir": str(d.state_dir),
        "audit": audit_block(d),
        "models": models_block(d.model_refs),
        "authorisations": authorisations_block(d.authorisations, d.now_ms),
        "rules": rules_block(d.rules),
        "measures": measures_block(d),
    }
    return fill(template if template is not None else template_text(), blocks)
