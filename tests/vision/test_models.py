"""Model files are used only when their sha256 is the one expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from facestream.errors import ConfigError, ModelError
from facestream.settings import EmbedderSettings, ModelSettings
from facestream.vision.factory import build_embedder
from facestream.vision.models import BUILTIN_MODELS, load_model, sha256_of

EMBEDDER = "mobilefacenet-arcface-512"


@pytest.fixture
def model_copy(model_settings: ModelSettings, tmp_path: Path) -> Path:
    """A private copy of the model cache that a test may damage."""
    copy = tmp_path / "models"
    shutil.copytree(model_settings.model_dir, copy)
    return copy


def test_builtin_models_load_and_are_named_by_their_weights(model_settings: ModelSettings) -> None:
    for name, spec in BUILTIN_MODELS.items():
        model = load_model(name, None, model_settings.model_dir)
        assert model.model_id == f"{name}@{spec.sha256[:12]}"
        assert sha256_of(model.data) == spec.sha256


def test_a_tampered_builtin_file_is_refused(model_copy: Path) -> None:
    path = model_copy / f"{EMBEDDER}.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fails its checksum"):
        load_model(EMBEDDER, None, model_copy)


def test_a_builtin_not_fetched_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="facestream models fetch"):
        load_model(EMBEDDER, None, tmp_path)


def test_a_custom_model_path_needs_its_sha256(model_copy: Path) -> None:
    custom = model_copy / "my-embedder.onnx"
    shutil.copy(model_copy / f"{EMBEDDER}.onnx", custom)
    with pytest.raises(ConfigError, match="needs its sha256"):  # an operator's setting: exit 2
        load_model(str(custom))
    with pytest.raises(ModelError, match="fails its checksum"):
        load_model(str(custom), "0" * 64)


def test_a_custom_model_with_its_sha256_is_used(model_copy: Path, model_settings: ModelSettings) -> None:
    """The operator's path: --embedder-model PATH --embedder-model-sha256 HEX."""
    custom = model_copy / "my-embedder.onnx"
    shutil.copy(model_copy / f"{EMBEDDER}.onnx", custom)
    digest = sha256_of(custom.read_bytes())
    mine = build_embedder(
        EmbedderSettings(embedder_model=str(custom), embedder_model_sha256=digest.upper()), model_settings
    )
    assert mine.model_id == f"my-embedder@{digest[:12]}"
    crop = np.random.default_rng(0).integers(0, 255, (1, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        mine.embed(crop), build_embedder(EmbedderSettings(), model_settings).embed(crop)
    )


def test_a_missing_custom_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a built-in model"):
        load_model(str(tmp_path / "nope.onnx"), "0" * 64)
