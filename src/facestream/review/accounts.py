"""Reviewer accounts for signing in to the review web app: names and scrypt password hashes.

Kept in `reviewers.json` in the state directory (mode 0600, replaced atomically under a lock,
like the other accountability documents). An account only lets a person sign in: what they
may do is their role in roles.json (`resolve_actor`), checked on every decision. Passwords
are hashed with scrypt (hashlib; n=2^15, r=8, p=1, 16-byte salt), compared in constant time,
and an unknown name costs the same hash as a known one, so timing does not reveal accounts.
How often a name may be tried is the web app's business (limits.py: counted per account and
client before the hash runs), not a lock here that anyone could trigger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from facestream.accountability.jsonstore import locked, read_document
from facestream.accountability.roles import actor_name
from facestream.errors import ConfigError

FILE = "reviewers.json"
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_DUMMY = hash_password("not a password of anyone", salt=b"\x00" * 16)


def check_new_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConfigError(f"a reviewer password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    password_hash: str
    created_at_ms: int
    created_by: str


class ReviewerAccounts:
    """The account file, and the password check of a sign-in."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE

    def all(self) -> dict[str, Account]:
        raw = read_document(self.path).get("accounts", {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path} is damaged (accounts must be an object)")
        try:
            return {
                name: Account(name, str(a["password_hash"]), int(a["created_at_ms"]), str(a["created_by"]))
                for name, a in raw.items()
            }
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{self.path} is damaged (an account lacks a field)") from None

    def add(self, name: str, password: str, *, by: str, replace: bool = False) -> Account:
        actor_name(name)
        account = Account(name, hash_password(check_new_password(password)), int(time.time() * 1000), by)
        with locked(self.path):
            accounts = self.all()
            if name in accounts and not replace:
                raise ConfigError(f"reviewer account {name} exists; use set-password to change its password")
            accounts[name] = account
            self._write(accounts)
        return account

    def remove(self, name: str) -> None:
        with locked(self.path):
            accounts = self.all()
            if name not in accounts:
                raise ConfigError(f"no reviewer account {name}")
            del accounts[name]
            self._write(accounts)

    def verify(self, name: str, password: str) -> bool:
        """Whether the name and password match an account: one scrypt hash either way (slow: call
        it off the event loop, and only for an attempt the sign-in limits admitted and counted)."""
        account = self.all().get(name)
        return check_password(password, account.password_hash if account else _DUMMY) and account is not None

    def _write(self, accounts: dict[str, Account]) -> None:
        doc = {
            "accounts": {
                a.name: {
                    "password_hash": a.password_hash,
                    "created_at_ms": a.created_at_ms,
                    "created_by": a.created_by,
                }
                for a in sorted(accounts.values(), key=lambda a: a.name)
            }
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
