"""Settings of the accountability layer: where its state lives, the photo key, the purge bound.

Same conventions as facestream.settings: frozen, every field a flag and an env var, secrets
as SecretStr. They live here, beside the code that reads them, and their field names are
unique across all settings because each becomes a flag of the same name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from facestream.env_names import EnvNamedSettings
from facestream.errors import ConfigError
from facestream.gallery.store import is_server_uri
from facestream.settings import GallerySettings

_CONFIG = SettingsConfigDict(env_prefix="FACESTREAM_", frozen=True, extra="forbid", protected_namespaces=())


class AccountabilitySettings(EnvNamedSettings):
    """Accountability state: authorisations, roles, rules, encrypted photos, the audit log."""

    model_config = _CONFIG

    state_dir: Path | None = Field(
        None,
        description="directory of authorisations, roles, rules, encrypted photos and the audit log; "
        "default: the gallery directory (required when the gallery is a Milvus server URI)",
    )


class PhotoSettings(EnvNamedSettings):
    """The key that encrypts enrollment photos at rest."""

    model_config = _CONFIG

    photo_key: SecretStr | None = Field(
        None,
        description="key encrypting enrollment photos: 32 bytes, base64; prefer the environment variable",
    )
    photo_key_file: Path | None = Field(
        None, description="file holding the photo key (base64), e.g. a mounted Kubernetes Secret"
    )


class PolicySettings(EnvNamedSettings):
    """How the matcher learns camera zones and how soon ended authorisations are purged."""

    model_config = _CONFIG

    purge_interval_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="the matcher purges expired/revoked authorisations' vectors and photos this often",
    )
    cameras_file: Path | None = Field(
        None,
        description="JSON list of camera configs (as given to `cameras put`) giving each camera's zone; "
        "re-read on change. A camera whose zone is unknown never matches while a zone rule is active",
    )


def state_dir_of(gallery: GallerySettings, settings: AccountabilitySettings) -> Path:
    """The accountability state's home: --state-dir, else the (embedded) gallery directory."""
    if settings.state_dir is not None:
        return settings.state_dir
    if is_server_uri(gallery.gallery):
        raise ConfigError("--state-dir is required when --gallery is a Milvus server URI")
    return Path(gallery.gallery)
