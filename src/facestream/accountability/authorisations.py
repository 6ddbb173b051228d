"""Authorisations: the legal ground a watchlist entry exists under, and the only way one matches.

An authorisation names its legal basis, purpose, case, issuing authority, validity and place
(cameras and/or zones; none given means every camera). Entries are enrolled under one and
carry its id; the matcher lets an entry match only while its authorisation is active, in
validity at the frame's time, and in scope for the camera (policy.py). Revoking or expiry
ends matching at once and leads to the entries' vectors and photos being purged (purge.py).

Kept in `authorisations.json` in the gallery (state) directory. Records are never deleted:
an ended authorisation stays, with who ended it and when its data was purged, because the
transparency report and the audit need it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facestream.accountability.clock import iso, now_ms
from facestream.accountability.jsonstore import damaged, locked, read_document, signature, write_document
from facestream.errors import ConfigError, NotAuthorised

Purpose = Literal["wanted", "missing", "threat"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
Status = Literal["active", "revoked", "expired"]
_ID = r"^auth_[0-9a-f]{16}$"
_PLACE = r"^[A-Za-z0-9_.:\-]{1,128}$"


class Authorisation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_ID)
    case_ref: str = Field(min_length=1, max_length=128)
    legal_basis: str = Field(min_length=1, max_length=256)
    purpose: Purpose
    issued_by: str = Field(min_length=1, max_length=256, description="the issuing authority")
    valid_from_ms: int
    valid_until_ms: int
    cameras: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    status: Status = "active"
    granted_by: str
    granted_at_ms: int
    revoked_by: str | None = None
    revoked_at_ms: int | None = None
    ended_at_ms: int | None = None
    """When it stopped matching: revoked, or the sweep that marked it expired."""
    purged_at_ms: int | None = None
    """When its entries' vectors and photos were erased."""

    @model_validator(mode="after")
    def _valid_window(self) -> Authorisation:
        if self.valid_until_ms <= self.valid_from_ms:
            raise ValueError("valid-until must be after valid-from")
        return self

    @property
    def everywhere(self) -> bool:
        return not self.cameras and not self.zones

    def in_force_at(self, at_ms: int) -> bool:
        """Active and inside its validity window at `at_ms`."""
        return self.status == "active" and self.valid_from_ms <= at_ms < self.valid_until_ms

    def permits(self, frame_ms: int, now_ms: int) -> bool:
        """May its entries match a frame captured at `frame_ms`, searched at `now_ms`?

        Only while it is in force (active, and now inside its validity), and never for footage
        recorded after it ended. Footage recorded before it began may be searched while it is
        in force: a retrospective search is what the authority authorised for that period
        (live frames are captured "now", so for them both checks are the same).
        """
        return self.in_force_at(now_ms) and frame_ms < self.valid_until_ms

    def covers(self, camera_id: str, zone: str | None) -> bool:
        """In scope for a camera; a camera of unknown zone is only covered by name or by `everywhere`."""
        if self.everywhere or camera_id in self.cameras:
            return True
        return zone is not None and zone in self.zones

    def why_not_usable(self, at_ms: int) -> str | None:
        """Why nothing can be enrolled under it now, or None when it can."""
        if self.status != "active":
            return f"authorisation {self.id} is {self.status}"
        if at_ms < self.valid_from_ms:
            return f"authorisation {self.id} is not valid before {iso(self.valid_from_ms)}"
        if at_ms >= self.valid_until_ms:
            return f"authorisation {self.id} expired at {iso(self.valid_until_ms)}"
        return None

    def public(self) -> dict[str, object]:
        """The record as printed by the CLI (ISO times beside the ms)."""
        out: dict[str, object] = self.model_dump()
        out["valid_from"] = iso(self.valid_from_ms)
        out["valid_until"] = iso(self.valid_until_ms)
        out["cameras"] = list(self.cameras)
        out["zones"] = list(self.zones)
        return out


def check_places(values: Sequence[str], what: str) -> tuple[str, ...]:
    for value in values:
        if not re.match(_PLACE, value):
            raise ConfigError(f"{what}: {value!r} is not a camera/zone id (letters, digits, . _ : -)")
    return tuple(dict.fromkeys(values))


class AuthorisationStore:
    FILE = "authorisations.json"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.FILE
        self._cache: tuple[tuple[int, int, int] | None, dict[str, Authorisation]] | None = None

    def all(self) -> dict[str, Authorisation]:
        """Every authorisation by id; re-read only when the file has changed (cheap to call per batch)."""
        sig = signature(self.path)
        if self._cache is not None and self._cache[0] == sig and sig is not None:
            return self._cache[1]
        items = self._load()
        self._cache = (sig, items)
        return items

    def _load(self) -> dict[str, Authorisation]:
        raw = read_document(self.path).get("authorisations", [])
        try:
            items = [Authorisation.model_validate(a) for a in raw]
        except (ValidationError, TypeError) as exc:
            raise damaged(self.path, exc) from None
        return {a.id: a for a in items}

    def get(self, auth_id: str) -> Authorisation:
        found = self.all().get(auth_id)
        if found is None:
            raise NotAuthorised(f"no authorisation {auth_id!r} (see `facestream authorisation list`)")
        return found

    def usable(self, auth_id: str, at_ms: int | None = None) -> Authorisation:
        """The authorisation, if entries may be enrolled under it now; else NotAuthorised saying why."""
        auth = self.get(auth_id)
        why = auth.why_not_usable(now_ms() if at_ms is None else at_ms)
        if why:
            raise NotAuthorised(why)
        return auth

    def grant(
        self,
        *,
        case_ref: str,
        legal_basis: str,
        purpose: Purpose,
        issued_by: str,
        valid_until_ms: int,
        granted_by: str,
        valid_from_ms: int | None = None,
        cameras: Sequence[str] = (),
        zones: Sequence[str] = (),
        at_ms: int | None = None,
    ) -> Authorisation:
        at = now_ms() if at_ms is None else at_ms
        if valid_until_ms <= at:
            raise ConfigError(f"--valid-until {iso(valid_until_ms)} is not in the future")
        try:
            auth = Authorisation(
                id=f"auth_{secrets.token_hex(8)}",
                case_ref=case_ref.strip(),
                legal_basis=legal_basis.strip(),
                purpose=purpose,
                issued_by=issued_by.strip(),
                valid_from_ms=at if valid_from_ms is None else valid_from_ms,
                valid_until_ms=valid_until_ms,
                cameras=check_places(cameras, "--cameras"),
                zones=check_places(zones, "--zones"),
                granted_by=granted_by,
                granted_at_ms=at,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "authorisation"
            raise ConfigError(f"{where}: {first['msg']}") from None
        with locked(self.path):
            items = self._load()
            items[auth.id] = auth
            self._write(items)
        return auth

    def update(self, auth_id: str, **changes: object) -> Authorisation:
        """Change fields of one authorisation under the lock (status transitions, purge stamps)."""
        with locked(self.path):
            items = self._load()
            if auth_id not in items:
                raise ConfigError(f"no authorisation {auth_id!r}")
            updated = items[auth_id].model_copy(update=changes)
            items[auth_id] = Authorisation.model_validate(updated.model_dump())
            self._write(items)
        return items[auth_id]

    def revoke(self, auth_id: str, by: str, at_ms: int | None = None) -> Authorisation:
        at = now_ms() if at_ms is None else at_ms
        with locked(self.path):
            items = self._load()
            auth = items.get(auth_id)
            if auth is None:
                raise ConfigError(f"no authorisation {auth_id!r} (see `facestream authorisation list`)")
            if auth.status != "active":
                raise ConfigError(f"authorisation {auth_id} is already {auth.status}")
            items[auth_id] = auth.model_copy(
                update={"status": "revoked", "revoked_by": by, "revoked_at_ms": at, "ended_at_ms": at}
            )
            self._write(items)
        return items[auth_id]

    def mark_expired(
        self, at_ms: int, record: Callable[[Authorisation], None] | None = None
    ) -> list[Authorisation]:
        """Active authorisations past their validity become `expired`; returns those changed now.

        Under the lock, so when several processes sweep only one of them records each expiry.
        `record` (the audit) is called for each before it is stored: an expiry whose record
        fails stays unmarked, to be recorded and marked by the next sweep, so no expiry is ever
        stored unaudited. (It cannot match meanwhile: the search checks each entry's validity.)
        """
        if not any(a.status == "active" and a.valid_until_ms <= at_ms for a in self.all().values()):
            return []
        done: list[Authorisation] = []
        with locked(self.path):
            items = self._load()
            due = [a for a in items.values() if a.status == "active" and a.valid_until_ms <= at_ms]
            try:
                for auth in due:
                    ended = auth.model_copy(update={"status": "expired", "ended_at_ms": at_ms})
                    if record is not None:
                        record(ended)
                    items[auth.id] = ended
                    done.append(ended)
            finally:
                if done:
                    self._write(items)
        return done

    def _write(self, items: dict[str, Authorisation]) -> None:
        ordered = sorted(items.values(), key=lambda a: (a.granted_at_ms, a.id))
        write_document(self.path, {"authorisations": [a.model_dump(mode="json") for a in ordered]})
        self._cache = None
