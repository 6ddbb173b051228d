"""Command-line flags generated from the settings models, so `--help` lists every option,
its default and its environment variable, and the two can never drift apart."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings

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


def add_settings(parser: argparse.ArgumentParser, *models: type[BaseSettings]) -> None:
    """One argument group per settings model, one flag per field."""
    for model in models:
        group = parser.add_argument_group((model.__doc__ or model.__name__).strip().splitlines()[0])
        prefix = str(model.model_config.get("env_prefix", ""))
        for name, field in model.model_fields.items():
            inner, _ = _unwrap(field.annotation)
            default = field.get_default(call_default_factory=True)
            shown = "***" if inner is SecretStr and default is not None else default
            help_text = f"{field.description or name} (default: {shown}; env {prefix}{name.upper()})"
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


def settings_from(args: argparse.Namespace, model: type[S]) -> S:
    """Build a settings model: flags given on the command line win over the environment."""
    given = {
        name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None
    }
    try:
        return model(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else model.__name__
        where = (
            flag(field) if field in given else f"{model.model_config.get('env_prefix', '')}{field.upper()}"
        )
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
