"""The audit log's signing key (Ed25519) and the public keys that verify it.

The private key is a secret: `FACESTREAM_AUDIT_KEY` (PEM, or base64 of the 32-byte seed)
or `FACESTREAM_AUDIT_KEY_FILE` (or `audit_key_file` in the config file's `audit:` section).
Without either, a development key is generated beside the gallery directory
(`<gallery>.audit-key`, mode 0600, outside the directory so that a copy of the gallery does
not carry it) with a loud warning: whoever can read it can forge checkpoints, so production
deployments mount the key from a secret store.

The settings come from wherever every other setting does: flags > env > the `--config` file's
`audit:` section > defaults (cliargs.settings_from), built by each command and service and passed
to the log it opens. Commands that write the log take AUDIT_SIGNING as flags.

Verification needs only public keys. Each signature names its key by `key_id` (the first
16 hex digits of the sha256 of the raw public key), so rotated keys verify side by side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from facestream.cliargs import Only
from facestream.env_names import EnvNamedSettings
from facestream.errors import AuditError, ConfigError

log = logging.getLogger(__name__)

PUBLIC_KEYS_FILE = "audit.pub"


class AuditSettings(EnvNamedSettings):
    """The audit log: signing key, checkpoint cadence, and the public keys that verify it."""

    model_config = SettingsConfigDict(
        env_prefix="FACESTREAM_", frozen=True, extra="forbid", protected_namespaces=()
    )

    audit_key: SecretStr | None = Field(
        None, description="Ed25519 signing key (PEM, or base64 of the 32-byte seed); prefer the env var"
    )
    audit_key_file: Path | None = Field(None, description="file holding the Ed25519 signing key (PEM)")
    audit_public_key: Path | None = Field(
        None, description="PEM file of the public key(s) to verify with (default: audit.pub in the gallery)"
    )
    audit_checkpoint_every: int = Field(
        100, ge=2, le=1_000_000, description="a signed checkpoint after this many records"
    )


AUDIT_SIGNING = Only(AuditSettings, "audit_key", "audit_key_file", "audit_checkpoint_every")
"""What a writer of the log uses: the flags of every command and service that appends to it
(audit_public_key is the verifiers', given to them as --public-key)."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs checkpoints and head seals."""

    private: Ed25519PrivateKey
    key_id: str
    development: bool = False

    @classmethod
    def of(cls, private: Ed25519PrivateKey, development: bool = False) -> Signer:
        return cls(private, key_id(private.public_key()), development)

    def sign(self, payload: bytes) -> bytes:
        return self.private.sign(payload)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Public keys by key id; `source` says where they came from (trust depends on it)."""

    keys: Mapping[str, Ed25519PublicKey]
    source: str

    def verify(self, kid: str, signature: bytes, payload: bytes) -> str | None:
        """None when the signature is good, else why not."""
        public = self.keys.get(kid)
        if public is None:
            return f"signed by unknown key {kid}"
        try:
            public.verify(signature, payload)
        except InvalidSignature:
            return f"signature does not verify with key {kid}"
        return None


def parse_private_key(text: str, where: str) -> Ed25519PrivateKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{where}: not an Ed25519 private key")
            return key
        seed = base64.b64decode(text, validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigError(f"{where}: not a PEM Ed25519 key nor base64 of a 32-byte seed ({exc})") from None


KEY_WHERE = "audit_key (FACESTREAM_AUDIT_KEY, --audit-key or the config file's audit.audit_key)"
"""How an unusable key is named: it may come from any of the three, and its value is never shown."""


def load_signer(settings: AuditSettings, gallery_dir: Path) -> Signer:
    """The configured key, else the gallery's development key (created on first use, with a warning)."""
    if settings.audit_key is not None:
        return Signer.of(parse_private_key(settings.audit_key.get_secret_value(), KEY_WHERE))
    if settings.audit_key_file is not None:
        try:
            text = settings.audit_key_file.read_text()
        except OSError as exc:
            raise ConfigError(f"audit_key_file {settings.audit_key_file}: {exc.strerror}") from None
        return Signer.of(parse_private_key(text, str(settings.audit_key_file)))
    return _development_signer(dev_key_path(gallery_dir))


def dev_key_path(gallery_dir: Path) -> Path:
    resolved = gallery_dir.resolve()
    return resolved.parent / f"{resolved.name}.audit-key"


def _development_signer(path: Path) -> Signer:
    if not path.exists():
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    if path.stat().st_mode & 0o077:
        raise AuditError(f"{path}: the audit signing key must not be readable by others (chmod 600)")
    log.warning(
        "audit log signed with a DEVELOPMENT key (%s); set FACESTREAM_AUDIT_KEY_FILE (or the config "
        "file's audit.audit_key_file) to a mounted secret, or FACESTREAM_AUDIT_KEY, in any real deployment",
        path,
    )
    return Signer.of(parse_private_key(path.read_text(), str(path)), development=True)


def parse_public_keys(data: bytes, where: str) -> dict[str, Ed25519PublicKey]:
    """Every PEM public key in `data` (a key ring file holds one block per key ever used)."""
    keys: dict[str, Ed25519PublicKey] = {}
    marker = b"-----END PUBLIC KEY-----"
    for block in data.split(marker):
        if b"-----BEGIN PUBLIC KEY-----" not in block:
            continue
        try:
            key = serialization.load_pem_public_key(block.strip() + b"\n" + marker + b"\n")
        except ValueError as exc:
            raise ConfigError(f"{where}: unreadable public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{where}: not an Ed25519 public key")
        keys[key_id(key)] = key
    if not keys:
        raise ConfigError(f"{where}: no PEM public key in it")
    return keys


def load_key_ring(paths: Iterable[Path], source: str) -> KeyRing:
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"public key {path}: {exc.strerror}") from None
        keys.update(parse_public_keys(data, str(path)))
    return KeyRing(keys, source)


def publish_public_key(signer: Signer, gallery_dir: Path) -> None:
    """Add the signer's public key to the gallery's key ring file, once, so a verifier can find it."""
    path = gallery_dir / PUBLIC_KEYS_FILE
    existing = path.read_bytes() if path.exists() else b""
    if existing and signer.key_id in parse_public_keys(existing, str(path)):
        return
    with path.open("ab") as f:
        f.write(public_pem(signer.public))
        f.flush()
        os.fsync(f.fileno())
