"""Fuzzing every parser of configuration and state: camera configs (the `cameras` topic and the
file `cameras put` reads), settings from the environment, the JSON stores of the accountability
layer (authorisations, roles, suspension rules, reviewer accounts) and the camera-zones file.

Each raises nothing but its defined error (ConfigError), whatever the input: a damaged file or a
hostile record must give the operator one line saying what is wrong, never a traceback, and
never a silently empty state.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_settings import BaseSettings

from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.roles import RoleStore
from facestream.accountability.rules import RuleStore
from facestream.accountability.zones import CameraZones
from facestream.camera.spec import CameraSpec, load_cameras, parse_camera
from facestream.cliargs import settings_from
from facestream.config_file import settings_models
from facestream.env_names import env_names
from facestream.errors import ConfigError
from facestream.review.accounts import ReviewerAccounts
from tests.fuzz.strategies import fuzz, json_text, json_values, near

VALID_CAMERA: dict[str, Any] = {
    "camera_id": "cam-1",
    "url": "rtsp://user:pw@10.0.0.1/stream",
    "fps": 2.0,
    "zone": "north",
    "enabled": True,
    "start_at_ms": None,
}


def config_error_or(fn: Callable[[], Any]) -> Any:
    """fn()'s result, or None when it raised a one-line ConfigError; anything else escapes."""
    try:
        return fn()
    except ConfigError as exc:
        text = str(exc)
        assert text and "\n" not in text.strip(), text
        return None


# -- camera configs ---------------------------------------------------------------------------------


@fuzz(500)
@given(near(VALID_CAMERA))
def test_camera_configs_near_a_valid_one(config: dict[str, Any]) -> None:
    for form in (config, json.dumps(config), json.dumps(config).encode()):
        spec = config_error_or(lambda form=form: parse_camera(form))
        assert spec is None or isinstance(spec, CameraSpec)


@fuzz(500)
@given(
    st.one_of(
        json_text(json_values), st.binary(max_size=200), st.binary(max_size=100).map(lambda b: b"\0" + b)
    )
)
def test_camera_configs_of_any_bytes_or_text(raw: str | bytes) -> None:
    config_error_or(lambda: parse_camera(raw))


@fuzz(300)
@given(
    st.one_of(
        json_text(json_values),
        st.lists(near(VALID_CAMERA), max_size=4).map(json.dumps),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    )
)
def test_camera_files(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cameras.json"
        path.write_bytes(text.encode(errors="surrogateescape"))
        cameras = config_error_or(lambda: load_cameras(path))
        assert cameras is None or all(isinstance(c, CameraSpec) for c in cameras)
        zones = CameraZones(cameras_file=path)  # the matcher's reader: fails closed, never raises
        assert zones.zone_of("cam-1") in (None, *(c.zone for c in cameras or [] if c.camera_id == "cam-1"))


# -- settings from the environment ------------------------------------------------------------------

SETTINGS: list[type[BaseSettings]] = list(settings_models())  # every model there is
env_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20),
    st.sampled_from(["", "-1", "0", "1e309", "nan", "inf", "true", "[]", "{}", "null", "65536", "PLAINTEXT"]),
)


def _env_names(model: type[BaseSettings]) -> list[str]:
    """Every variable a field is read from: its name and a former one."""
    return [env for name in model.model_fields for env in env_names(model, name)]


@pytest.mark.parametrize("model", SETTINGS, ids=[m.__name__ for m in SETTINGS])
@fuzz(120)
@given(data=st.data())
def test_settings_from_any_environment(model: type[BaseSettings], data: st.DataObject) -> None:
    names = _env_names(model)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    env = {name: data.draw(env_text) for name in chosen}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        settings = config_error_or(lambda: settings_from(argparse.Namespace(), model))
    if settings is not None:
        assert isinstance(settings, model)


# -- the accountability stores and reviewer accounts ---------------------------------------------------

VALID_AUTH: dict[str, Any] = {
    "id": "a" * 16,
    "case_ref": "CASE-1",
    "legal_basis": "court order",
    "purpose": "wanted",
    "issued_by": "judge",
    "valid_from_ms": 0,
    "valid_until_ms": 4_000_000_000_000,
}
documents = st.one_of(
    json_text(json_values),
    st.builds(
        lambda v: json.dumps({"authorisations": v}),
        st.one_of(json_values, st.lists(near(VALID_AUTH), max_size=3)),
    ),
    st.builds(lambda v: json.dumps({"assignments": v}), json_values),
    st.builds(
        lambda v: json.dumps({"assignments": v}),
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(json_values, st.lists(st.sampled_from(["operator", "reviewer", "x"]))),
        ),
    ),
    st.builds(lambda v: json.dumps({"rules": v}), st.one_of(json_values, st.lists(json_values, max_size=3))),
    st.builds(lambda v: json.dumps({"accounts": v}), json_values),
    st.builds(
        lambda v: json.dumps({"accounts": {"rita": v}}),
        near({"password_hash": "scrypt$x", "created_at_ms": 1, "created_by": "olga"}),
    ),
)


@fuzz(600)
@given(st.one_of(documents.map(str.encode), st.binary(max_size=100)))
def test_state_files_of_any_content(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        for name in ("authorisations.json", "roles.json", "rules.json", "reviewers.json"):
            (state / name).write_bytes(content)
        config_error_or(lambda: AuthorisationStore(state).all())
        config_error_or(lambda: RoleStore(state).assignments())
        config_error_or(lambda: RuleStore(state).all())
        config_error_or(lambda: ReviewerAccounts(state).all())
