"""Fixtures shared by the whole suite: the real models, the real test photos, a gallery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facestream.settings import DetectorSettings, EmbedderSettings, ModelSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models

REPO = Path(__file__).resolve().parents[1]

# One fixture module per concern (Kafka broker, media, ...); add yours here.
pytest_plugins: list[str] = [
    "tests.fixtures.media",
    "tests.fixtures.kafka",
    "tests.fixtures.audit",
    "tests.fixtures.accountability",
    "tests.fixtures.mjpeg",
    "tests.fixtures.helm",
    "tests.fixtures.browser",
    "tests.fixtures.reliability",
    "tests.fixtures.security",
    "tests.fixtures.milvus",
]


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces beside the checkout (CI has it); FACESTREAM_FACES overrides."""
    path = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))
    if not (path / "enroll").is_dir():
        pytest.fail(f"test photos not found at {path}; set FACESTREAM_FACES")
    return path


@pytest.fixture(scope="session")
def model_settings() -> ModelSettings:
    settings = ModelSettings(execution_provider="cpu")
    fetch_builtin_models(settings.model_dir)
    return settings


@pytest.fixture(scope="session")
def finder(model_settings: ModelSettings) -> FaceFinder:
    return build_finder(DetectorSettings(), model_settings)


@pytest.fixture(scope="session")
def embedder(model_settings: ModelSettings) -> FaceEmbedder:
    return build_embedder(EmbedderSettings(), model_settings)
