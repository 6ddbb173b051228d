"""One env var per setting: the concern is said once (FACESTREAM_GALLERY, not
FACESTREAM_GALLERY_GALLERY), the former repeated names still work with a warning, and every place
that names a variable (help, errors, the config file's precedence) uses the new name."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from pydantic_settings import BaseSettings

from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import settings_from
from facestream.config_file import settings_models
from facestream.env_names import EnvNamedSettings, env_name, env_names, former_env_name
from facestream.errors import ConfigError
from facestream.review.settings import ReviewSettings
from facestream.settings import (
    DetectorSettings,
    EmbedderSettings,
    GallerySettings,
    KafkaSettings,
    ModelSettings,
)

RENAMED = {
    (GallerySettings, "gallery"): ("FACESTREAM_GALLERY", "FACESTREAM_GALLERY_GALLERY"),
    (GallerySettings, "gallery_token"): ("FACESTREAM_GALLERY_TOKEN", "FACESTREAM_GALLERY_GALLERY_TOKEN"),
    (DetectorSettings, "detector_model"): ("FACESTREAM_DETECTOR_MODEL", "FACESTREAM_DETECTOR_DETECTOR_MODEL"),
    (DetectorSettings, "detector_type"): ("FACESTREAM_DETECTOR_TYPE", "FACESTREAM_DETECTOR_DETECTOR_TYPE"),
    (EmbedderSettings, "embedder_model_sha256"): (
        "FACESTREAM_EMBEDDER_MODEL_SHA256",
        "FACESTREAM_EMBEDDER_EMBEDDER_MODEL_SHA256",
    ),
    (ModelSettings, "model_dir"): ("FACESTREAM_MODEL_DIR", "FACESTREAM_MODEL_MODEL_DIR"),
}


@pytest.mark.parametrize(("model", "field"), list(RENAMED), ids=lambda x: getattr(x, "__name__", x))
def test_a_repeated_concern_is_said_once_and_the_former_name_kept(
    model: type[BaseSettings], field: str
) -> None:
    new, former = RENAMED[(model, field)]
    assert env_name(model, field) == new
    assert former_env_name(model, field) == former
    assert env_names(model, field) == (new, former)


@pytest.mark.parametrize(
    ("model", "field", "name"),
    [
        (GallerySettings, "collection", "FACESTREAM_GALLERY_COLLECTION"),
        (DetectorSettings, "landmarker_model", "FACESTREAM_DETECTOR_LANDMARKER_MODEL"),
        (KafkaSettings, "bootstrap_servers", "FACESTREAM_KAFKA_BOOTSTRAP_SERVERS"),
        (ReviewSettings, "review_window_s", "FACESTREAM_REVIEW_WINDOW_S"),
        (AccountabilitySettings, "state_dir", "FACESTREAM_STATE_DIR"),
    ],
)
def test_other_names_are_prefix_and_field(model: type[BaseSettings], field: str, name: str) -> None:
    assert env_name(model, field) == name
    assert former_env_name(model, field) is None


def test_no_two_settings_share_a_variable_and_every_model_reads_its_names() -> None:
    """A new name must not be another field's variable (old or new), or one env var would set two
    settings; and a model that does not derive from EnvNamedSettings would not read its new names."""
    seen: dict[str, str] = {}
    for model in settings_models():
        assert issubclass(model, EnvNamedSettings), model
        for field in model.model_fields:
            for name in env_names(model, field):
                assert name not in seen, f"{name}: {seen.get(name)} and {model.__name__}.{field}"
                seen[name] = f"{model.__name__}.{field}"


def clean_env(**env: str) -> mock._patch_dict:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    return mock.patch.dict(os.environ, {**kept, **env}, clear=True)


def test_the_new_name_and_the_former_one_are_read_and_the_new_one_wins() -> None:
    with clean_env(
        FACESTREAM_GALLERY="/new", FACESTREAM_GALLERY_TOKEN="t", FACESTREAM_DETECTOR_MODEL="/m.onnx"
    ):
        gallery, detector = GallerySettings(), DetectorSettings()
    assert gallery.gallery == "/new"
    assert gallery.gallery_token is not None and gallery.gallery_token.get_secret_value() == "t"
    assert detector.detector_model == "/m.onnx"
    with clean_env(FACESTREAM_GALLERY_GALLERY="/old"):
        assert GallerySettings().gallery == "/old"
    with clean_env(FACESTREAM_GALLERY_GALLERY="/old", FACESTREAM_GALLERY="/new"):
        assert GallerySettings().gallery == "/new"


def test_a_new_name_in_the_environment_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "facestream.yaml"
    config.write_text("gallery:\n  gallery: /from-file\n")
    args = argparse.Namespace(config=config)
    with clean_env():
        assert settings_from(args, GallerySettings).gallery == "/from-file"
    for name in ("FACESTREAM_GALLERY", "FACESTREAM_GALLERY_GALLERY"):
        with clean_env(**{name: "/from-env"}):
            assert settings_from(args, GallerySettings).gallery == "/from-env", name
    with clean_env(FACESTREAM_GALLERY="/from-env"):
        assert (
            settings_from(argparse.Namespace(config=config, gallery="/flag"), GallerySettings).gallery
            == "/flag"
        )


def test_a_bad_value_is_blamed_on_the_variable_that_holds_it(tmp_path: Path) -> None:
    """Not on the config file, whose own values are checked without the environment."""
    config = tmp_path / "facestream.yaml"
    config.write_text("detector:\n  detector_type: ultraface\n")
    for name in ("FACESTREAM_DETECTOR_TYPE", "FACESTREAM_DETECTOR_DETECTOR_TYPE"):
        with (
            clean_env(**{name: "yolo"}),
            pytest.raises(ConfigError, match=rf"^{name}: Input should be 'ultraface'"),
        ):
            settings_from(argparse.Namespace(config=config), DetectorSettings)


def facestream(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("facestream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "facestream"]
    kept = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env={**kept, **env}, cwd=cwd, timeout=120
    )


def test_the_cli_shows_the_new_name_and_warns_of_the_former_one(tmp_path: Path) -> None:
    """`authorisation list` opens its state in the gallery directory and says which one (in its
    single-operator warning): the directory each variable names is the one used."""
    shown = facestream("authorisation", "list", "--help", env={}, cwd=tmp_path)
    assert "env FACESTREAM_GALLERY)" in " ".join(shown.stdout.split())
    assert "FACESTREAM_GALLERY_GALLERY" not in shown.stdout

    new = facestream("authorisation", "list", env={"FACESTREAM_GALLERY": str(tmp_path / "new")}, cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    assert f"no roles assigned in {tmp_path / 'new'}," in new.stderr
    assert "deprecated" not in new.stderr

    old = facestream(
        "authorisation", "list", env={"FACESTREAM_GALLERY_GALLERY": str(tmp_path / "old")}, cwd=tmp_path
    )
    assert old.returncode == 0, old.stderr
    assert f"no roles assigned in {tmp_path / 'old'}," in old.stderr
    assert "env FACESTREAM_GALLERY_GALLERY is deprecated: set FACESTREAM_GALLERY instead" in old.stderr
    assert old.stderr.count("deprecated") == 1

    both = facestream(
        "authorisation",
        "list",
        env={
            "FACESTREAM_GALLERY_GALLERY": str(tmp_path / "old"),
            "FACESTREAM_GALLERY": str(tmp_path / "new"),
        },
        cwd=tmp_path,
    )
    assert f"no roles assigned in {tmp_path / 'new'}," in both.stderr
    assert "env FACESTREAM_GALLERY_GALLERY is ignored: FACESTREAM_GALLERY is set" in both.stderr
