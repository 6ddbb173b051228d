"""Command-line flags generated from the settings models, so `--help` lists every option,
its default and its environment variable, and the two can never drift apart.

Every command with settings also takes `--config FILE` (env FACESTREAM_CONFIG), one YAML file of
settings for the deployment (facestream.config_file); flags > env > file > defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings

from facestream.config_file import CONFIG_ENV, config_path, load_config, section_of
from facestream.env_names import env_name, env_names
from facestream.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


class OneLineParser(argparse.ArgumentParser):
    """A bad argument gets one line saying what is wrong (and exit status 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for `X | None`."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return annotation, False


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Only:
    """Some fields of a settings model as flags, for a command that uses only those: identify
    reads the sampler's fps and JPEG settings, not the frame-sampler service's reconnect policy,
    and a flag it would parse and then ignore reads as if it did something. The other fields keep
    their defaults (or env and file values), unused."""

    model: type[BaseSettings]
    fields: tuple[str, ...]

    def __init__(self, model: type[BaseSettings], *fields: str) -> None:
        unknown = [f for f in fields if f not in model.model_fields]
        if unknown:
            raise ValueError(f"{model.__name__} has no field {', '.join(unknown)}")
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "fields", fields)


def model_of(given: type[BaseSettings] | Only) -> type[BaseSettings]:
    """The settings model itself, of a model or of some of its fields (`Only`): a process that
    offers only some fields as flags still builds the whole model (the others from env or file)."""
    return given.model if isinstance(given, Only) else given


def add_settings(parser: argparse.ArgumentParser, *models: type[BaseSettings] | Only) -> None:
    """One argument group per settings model, one flag per field (or per field named by `Only`),
    and `--config` once."""
    add_config_flag(parser)
    for given in models:
        model, fields = (given.model, given.fields) if isinstance(given, Only) else (given, None)
        title = (model.__doc__ or model.__name__).strip().splitlines()[0]
        group = parser.add_argument_group(f"{title} [config file section {section_of(model)}:]")
        for name, field in model.model_fields.items():
            if fields is not None and name not in fields:
                continue
            inner, _ = _unwrap(field.annotation)
            default = field.get_default(call_default_factory=True)
            shown = "***" if inner is SecretStr and default is not None else default
            help_text = f"{field.description or name} (default: {shown}; env {env_name(model, name)})"
            kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
            if inner is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif get_origin(inner) is Literal:
                kwargs["choices"] = list(get_args(inner))
                kwargs["type"] = type(get_args(inner)[0])
            elif inner in (int, float):
                kwargs["type"] = inner
                kwargs["metavar"] = "N"
            elif inner is Path:
                kwargs["type"] = Path
                kwargs["metavar"] = "PATH"
            else:
                kwargs["metavar"] = "TEXT"
            group.add_argument(flag(name), **kwargs)


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """`--config FILE`, added by the first add_settings on a parser (some call it twice)."""
    if any("--config" in action.option_strings for action in parser._actions):
        return
    group = parser.add_argument_group("Configuration file")
    group.add_argument(
        "--config",
        dest="config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"YAML file of settings, one section per group below (docs/configuration.md); env {CONFIG_ENV}. "
        "Flags override env vars, which override the file",
    )


def _env_sets(model: type[BaseSettings], name: str, environ: set[str]) -> bool:
    """Whether an env var sets this field, under its name or a former one (pydantic-settings
    matches names case-insensitively)."""
    return any(env in environ for env in env_names(model, name))


def settings_from(args: argparse.Namespace, model: type[S]) -> S:
    """Build a settings model: flags > environment > the --config file > defaults."""
    given = {
        name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None
    }
    path = config_path(args)
    config = load_config(path) if path is not None else None
    environ = {k.upper() for k in os.environ}
    from_file = (
        {
            name: entry.value
            for name, entry in config.values_for(model).items()
            if name not in given and not _env_sets(model, name, environ)
        }
        if config is not None
        else {}
    )
    try:
        return model(**{**from_file, **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else model.__name__
        if field in given:
            where = flag(field)
        elif config is not None and field in from_file:
            where = config.where(model, field)
        else:
            where = next((env for env in env_names(model, field) if env in environ), env_name(model, field))
        raise ConfigError(f"{where}: {first['msg']}") from None


def fail(message: str, status: int = 2) -> NoReturn:
    sys.stderr.write(f"facestream: error: {message}\n")
    raise SystemExit(status)


def describe(model: BaseModel) -> dict[str, Any]:
    """Settings as a dict for logs, secrets masked."""
    return {
        k: ("***" if isinstance(v, SecretStr) else str(v) if isinstance(v, Path) else v)
        for k, v in model.model_dump().items()
    }
