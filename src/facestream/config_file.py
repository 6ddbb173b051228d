"""One YAML file of settings for a whole deployment, read by every command and service.

The file has one section per settings model (`kafka:`, `runtime:`, `detector:`, `gallery:`, ...,
named after the model: KafkaSettings -> kafka, the same word as its env prefix FACESTREAM_KAFKA_)
and the model's fields beneath, so a deployment keeps its cameras' pointer, models, thresholds,
gallery and Kafka in one reviewed file instead of dozens of env vars. `--config FILE` (or env
FACESTREAM_CONFIG) names it; flags > env > file > defaults (cliargs.settings_from merges them).

The whole file is checked when it is read, whichever command reads it: an unknown section or key,
or a bad value, is a one-line ConfigError naming the file, line and key path (`f.yaml:12:
detector.det_score_threshold: ...`), never the value, which may be a secret. A value means what
the same text means in the env var (YAML's own typing is not used: `client_id: 123` is the text
"123", `track_faces: no` is false as FACESTREAM_DETECTOR_TRACK_FACES=no is); `null` or nothing
means None.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from facestream.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_ENV = "FACESTREAM_CONFIG"
MAX_BYTES = 1 << 20
"""A settings file is a few kilobytes; anything near a megabyte is not one."""

NO_ENV = "="
"""An env prefix no variable name can carry ('=' ends a name): validates a section without env."""

NULL_TAG = "tag:yaml.org,2002:null"


def settings_models() -> tuple[type[BaseSettings], ...]:
    """Every settings model there is: a section of one command's file is another's, so the file is
    checked against all of them (imported here, late, as the accountability ones pull in pymilvus)."""
    from facestream.accountability.audit_keys import AuditSettings
    from facestream.accountability.settings import AccountabilitySettings, PhotoSettings, PolicySettings
    from facestream.review.settings import ReviewSettings
    from facestream.settings import (
        DetectorSettings,
        EmbedderSettings,
        GallerySettings,
        KafkaSettings,
        MatcherSettings,
        ModelSettings,
        RuntimeSettings,
        SamplerSettings,
    )

    return (
        KafkaSettings,
        RuntimeSettings,
        ModelSettings,
        SamplerSettings,
        DetectorSettings,
        EmbedderSettings,
        GallerySettings,
        MatcherSettings,
        AccountabilitySettings,
        PhotoSettings,
        PolicySettings,
        AuditSettings,
        ReviewSettings,
    )


def section_of(model: type[BaseSettings]) -> str:
    """KafkaSettings -> kafka: the concern of FACESTREAM_KAFKA_, and for the models whose prefix is
    plain FACESTREAM_ (runtime, accountability, audit, review, ...) the class name says it alone."""
    return model.__name__.removesuffix("Settings").lower()


@dataclass(frozen=True)
class Entry:
    value: str | None
    line: int


@dataclass(frozen=True)
class ConfigFile:
    """A checked file: section -> field -> (value text, line)."""

    path: Path
    sections: Mapping[str, Mapping[str, Entry]]

    def values_for(self, model: type[BaseSettings]) -> Mapping[str, Entry]:
        return self.sections.get(section_of(model), {})

    def where(self, model: type[BaseSettings], field: str) -> str:
        """`file:line: section.field`, how every error about a value of the file starts."""
        return f"{self.path}:{self.values_for(model)[field].line}: {section_of(model)}.{field}"


def config_path(args: object) -> Path | None:
    """--config, else FACESTREAM_CONFIG, else no file. `args` may lack the flag (a Namespace built
    by code, not by a parser with add_settings): then only the env var can name a file."""
    given = getattr(args, "config", None)
    if given is not None:
        return Path(given)
    env = os.environ.get(CONFIG_ENV, "")
    return Path(env) if env else None


def load_config(path: Path) -> ConfigFile:
    """The file at `path`, checked; read again only when it changed (commands ask per model)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return _load(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load(name: str, _mtime_ns: int, _size: int) -> ConfigFile:
    path = Path(name)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES} bytes; not a settings file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    root = _compose(path, text)
    models = {section_of(m): m for m in settings_models()}
    sections: dict[str, dict[str, Entry]] = {}
    if root is None:
        return ConfigFile(path, sections)
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(
            f"{path}:{_line(root)}: expected sections (kafka:, detector:, ...), not {_kind(root)}"
        )
    owner = {field: name for name, m in models.items() for field in m.model_fields}
    for key_node, body in _pairs(path, root, ""):
        name = str(key_node.value)
        at = f"{path}:{_line(key_node)}: {_printable(name)}"
        if name not in models:
            hint = (
                _belongs(owner[name])
                if name in owner
                else _did_you_mean(name, models) or f" (sections: {', '.join(sorted(models))})"
            )
            raise ConfigError(f"{at}: unknown section{hint}")
        if isinstance(body, yaml.ScalarNode) and body.tag == NULL_TAG:
            continue  # `gallery:` with nothing under it yet
        if not isinstance(body, yaml.MappingNode):
            raise ConfigError(f"{at}: expected settings (key: value lines), not {_kind(body)}")
        model = models[name]
        entries: dict[str, Entry] = {}
        for field_node, value in _pairs(path, body, f"{name}."):
            field = str(field_node.value)
            here = f"{path}:{_line(field_node)}: {name}.{_printable(field)}"
            if field not in model.model_fields:
                hint = _belongs(owner[field]) if field in owner else _did_you_mean(field, model.model_fields)
                raise ConfigError(f"{here}: unknown setting{hint}")
            if not isinstance(value, yaml.ScalarNode):
                raise ConfigError(f"{here}: expected one value, not {_kind(value)}")
            entries[field] = Entry(None if value.tag == NULL_TAG else str(value.value), _line(field_node))
        _check(ConfigFile(path, {name: entries}), model)
        sections[name] = entries
    config = ConfigFile(path, sections)
    _warn_if_secrets_readable(config, models)
    return config


def _compose(path: Path, text: str) -> yaml.Node | None:
    """The node tree (it keeps each key's line); a syntax error names its line, never the text."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark, context = exc.problem_mark or exc.context_mark, exc.context_mark
        what = exc.problem or exc.context
        if exc.problem and exc.context and context is not None:
            if mark is not None and mark.index >= len(text.rstrip()):
                mark = context  # an unclosed quote or bracket: where it opened, not the file's end
                what = f"{exc.problem} ({exc.context})"
            else:
                what = f"{exc.problem} ({exc.context} from line {context.line + 1})"
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {what}") from None
    except yaml.YAMLError as exc:  # unmarked: e.g. a character YAML does not allow
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    except RecursionError:  # "[[[[..." deep enough exhausts the composer's stack
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None


def _pairs(path: Path, node: yaml.MappingNode, within: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """A mapping's (key, value) nodes; keys must be text and appear once (PyYAML would keep the
    last silently, so a pasted duplicate would quietly win)."""
    seen: dict[str, int] = {}
    out: list[tuple[yaml.ScalarNode, yaml.Node]] = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == NULL_TAG:
            raise ConfigError(f"{path}:{_line(key)}: {within or 'a section'}: a key must be a name")
        name = str(key.value)
        if name in seen:
            raise ConfigError(
                f"{path}:{_line(key)}: {within}{_printable(name)}: given twice (first on line {seen[name]})"
            )
        seen[name] = _line(key)
        out.append((key, value))
    return out


def _check(config: ConfigFile, model: type[BaseSettings]) -> None:
    """The section's values alone against the model (env ignored), so a bad value is named by its
    line whatever the environment holds; pydantic's message, never the value (it may be secret)."""
    entries = config.values_for(model)
    values: dict[str, Any] = {k: e.value for k, e in entries.items()}
    try:
        model(_env_prefix=NO_ENV, **values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = config.where(model, field) if field in entries else f"{config.path}: {section_of(model)}"
        raise ConfigError(f"{where}: {first['msg']}") from None
    except ConfigError as exc:  # a model's own validator that raises ConfigError
        raise ConfigError(f"{config.path}: {section_of(model)}: {exc}") from None


def _warn_if_secrets_readable(config: ConfigFile, models: Mapping[str, type[BaseSettings]]) -> None:
    """Secrets may live in the file (nothing prints them: errors and `describe` mask them), but
    then the file is a secret too: say so when others can read it."""
    secret = [
        f"{name}.{field}"
        for name, entries in config.sections.items()
        for field, entry in entries.items()
        if entry.value is not None and _is_secret(models[name], field)
    ]
    if not secret:
        return
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "config file %s holds secrets (%s) and others may read it (mode %o): chmod 600 it, "
            "or give them as env vars from a secret store",
            config.path,
            ", ".join(secret),
            stat.S_IMODE(mode),
        )


def _is_secret(model: type[BaseSettings], field: str) -> bool:
    annotation = model.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _belongs(section: str) -> str:
    """Where a setting given in the wrong place goes: its section."""
    return f"; it belongs under `{section}:`"


def _did_you_mean(name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    return {yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list"}.get(type(node), "a single value")


def _printable(name: str, limit: int = 60) -> str:
    """A key as one short line: a hostile key (newlines, a megabyte) must not reshape the message."""
    text = name.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
