"""Suspension rules: zones (camera groups) or cameras, and a time window, in which matching is off.

E.g. around a demonstration: `facestream rules add --zones old-town --from ... --until ...`.
The matcher asks before every search whether a rule covers the face's camera at the frame's
time; if one does, the face is not searched at all. A rule with neither zones nor cameras
covers every camera. Adding and removing rules are audited (`rules.change`); removed rules
are gone from the file but not from the audit log.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facestream.accountability.authorisations import check_places
from facestream.accountability.clock import iso
from facestream.accountability.jsonstore import damaged, locked, read_document, signature, write_document
from facestream.errors import ConfigError


class SuspensionRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^rule_[0-9a-f]{12}$")
    zones: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    starts_at_ms: int
    ends_at_ms: int
    reason: str = Field(min_length=1, max_length=256)
    created_by: str
    created_at_ms: int

    @model_validator(mode="after")
    def _window(self) -> SuspensionRule:
        if self.ends_at_ms <= self.starts_at_ms:
            raise ValueError("--until must be after --from")
        return self

    @property
    def everywhere(self) -> bool:
        return not self.zones and not self.cameras

    def covers(self, camera_id: str, zone: str | None, at_ms: int) -> bool:
        """True when matching is off for this camera at this time.

        `zone` None means the camera's zone is unknown: a zone rule then covers it, since
        matching must not go on where it might be suspended.
        """
        if not self.starts_at_ms <= at_ms < self.ends_at_ms:
            return False
        if self.everywhere or camera_id in self.cameras:
            return True
        return bool(self.zones) and (zone is None or zone in self.zones)

    def public(self) -> dict[str, object]:
        out: dict[str, object] = self.model_dump()
        out["zones"] = list(self.zones)
        out["cameras"] = list(self.cameras)
        out["from"] = iso(self.starts_at_ms)
        out["until"] = iso(self.ends_at_ms)
        return out


class RuleStore:
    FILE = "rules.json"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.FILE
        self._cache: tuple[tuple[int, int, int] | None, list[SuspensionRule]] | None = None

    def all(self) -> list[SuspensionRule]:
        sig = signature(self.path)
        if self._cache is not None and sig is not None and self._cache[0] == sig:
            return self._cache[1]
        rules = self._load()
        self._cache = (sig, rules)
        return rules

    def _load(self) -> list[SuspensionRule]:
        raw = read_document(self.path).get("rules", [])
        try:
            return [SuspensionRule.model_validate(r) for r in raw]
        except (ValidationError, TypeError) as exc:
            raise damaged(self.path, exc) from None

    def add(
        self,
        *,
        zones: Sequence[str],
        cameras: Sequence[str],
        starts_at_ms: int,
        ends_at_ms: int,
        reason: str,
        created_by: str,
        at_ms: int,
    ) -> SuspensionRule:
        try:
            rule = SuspensionRule(
                id=f"rule_{secrets.token_hex(6)}",
                zones=check_places(zones, "--zones"),
                cameras=check_places(cameras, "--cameras"),
                starts_at_ms=starts_at_ms,
                ends_at_ms=ends_at_ms,
                reason=reason.strip(),
                created_by=created_by,
                created_at_ms=at_ms,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(f"{where}: {first['msg']}") from None
        with locked(self.path):
            rules = self._load()
            rules.append(rule)
            self._write(rules)
        return rule

    def remove(self, rule_id: str) -> SuspensionRule:
        with locked(self.path):
            rules = self._load()
            gone = [r for r in rules if r.id == rule_id]
            if not gone:
                raise ConfigError(f"no suspension rule {rule_id!r} (see `facestream rules list`)")
            self._write([r for r in rules if r.id != rule_id])
        return gone[0]

    def _write(self, rules: list[SuspensionRule]) -> None:
        ordered = sorted(rules, key=lambda r: (r.starts_at_ms, r.id))
        write_document(self.path, {"rules": [r.model_dump(mode="json") for r in ordered]})
        self._cache = None
