"""Each setting's environment variable, one name for each.

A field's variable is its model's prefix and the field's name, upper-case, with a first word that
repeats the prefix's last said once: GallerySettings.gallery reads FACESTREAM_GALLERY, not
FACESTREAM_GALLERY_GALLERY, and DetectorSettings.detector_model FACESTREAM_DETECTOR_MODEL. The
field names themselves stay (they are the flags, `--gallery`, and the config file's keys, and are
unique across models for that reason).

The repeated names were the only ones before 2026-12 and deployments set them: they are still read,
with a warning naming the new one, and the new name wins where both are set. Every place that shows
or looks up a variable (help texts, config-file errors, the DPIA's settings table) asks `env_name`.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

log = logging.getLogger(__name__)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _prefix(model: type[BaseSettings]) -> str:
    return str(model.model_config.get("env_prefix", "")).upper()


def env_name(model: type[BaseSettings], field: str) -> str:
    """The variable that sets `field` of `model`."""
    prefix, name = _prefix(model), field.upper()
    concern = prefix.rstrip("_").rsplit("_", 1)[-1]
    if concern and (name == concern or name.startswith(f"{concern}_")):
        return (prefix + name[len(concern) :].lstrip("_")).rstrip("_")
    return prefix + name


def former_env_name(model: type[BaseSettings], field: str) -> str | None:
    """The repeated name `field` was read from before (prefix + name), where it differs."""
    former = _prefix(model) + field.upper()
    return former if former != env_name(model, field) else None


def env_names(model: type[BaseSettings], field: str) -> tuple[str, ...]:
    """Every variable that may set `field`: its name, then a former one."""
    former = former_env_name(model, field)
    return (env_name(model, field),) if former is None else (env_name(model, field), former)


def _warn_once(name: str, message: str) -> None:
    with _warned_lock:
        if name in _warned:
            return
        _warned.add(name)
    log.warning(message)


class _NamedEnv(PydanticBaseSettingsSource):
    """The fields whose variable was renamed, read under the new name (pydantic-settings reads the
    former one itself, as prefix + field, at a lower priority)."""

    def __init__(self, settings_cls: type[BaseSettings], env: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        model = self.settings_cls
        if not isinstance(self._env, EnvSettingsSource) or self._env.env_prefix.upper() != _prefix(model):
            return {}  # the environment is not read this time (a config file's values checked alone)
        environ = {key.upper(): value for key, value in os.environ.items()}
        out: dict[str, Any] = {}
        for field in model.model_fields:
            former = former_env_name(model, field)
            if former is None:
                continue
            name = env_name(model, field)
            if name in environ:
                out[field] = environ[name]
                if former in environ:
                    _warn_once(former, f"env {former} is ignored: {name} is set, and replaces it")
            elif former in environ:
                _warn_once(former, f"env {former} is deprecated: set {name} instead (read for now)")
        return out


class EnvNamedSettings(BaseSettings):
    """Base of every settings model: reads each field from `env_name` (and a former name)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _NamedEnv(settings_cls, env_settings),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )
