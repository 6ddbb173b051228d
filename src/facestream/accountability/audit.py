"""The audit log interface. (Placeholder implementation: plain JSON lines, no hash chain yet;
the hash-chained, checkpoint-signed log replaces the body of this module, not its interface.)"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        *,
        actor: Actor,
        action: str,
        authorisation_id: str | None = None,
        objects: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        seq = sum(1 for _ in self.path.open()) if self.path.exists() else 0
        record = AuditRecord(
            seq,
            int(time.time() * 1000),
            actor.name,
            actor.role,
            action,
            authorisation_id,
            dict(objects or {}),
        )
        with self.path.open("a") as f:
            f.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        return record


def open_audit_log(gallery_dir: Path) -> AuditLog:
    """The embedded mode's audit log: a file in the gallery directory."""
    gallery_dir.mkdir(parents=True, exist_ok=True)
    return AuditLog(gallery_dir / "audit.log")
