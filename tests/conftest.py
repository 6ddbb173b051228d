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


FIXTURE_MARKS = {
    "kafka_broker": "kafka",
    "kafka_prefix": "kafka",
    "kafka_topics": "kafka",
    "private_broker": "kafka",
    "secure_kafka": "kafka",
    "milvus_standalone": "milvus",
    "milvus_standalone_factory": "milvus",
    "milvus_server": "milvus",
    "chromium": "browser",
    "browser": "browser",
    "k8s_tools": "tools",
}
"""Fixtures that start or install something outside this process, and the marker their users get."""
HEAVY = ("kafka", "milvus", "browser", "tools", "subprocess", "fuzz")
"""Markers that imply `slow`: `make check` (-m "not slow") leaves these tests to `make test`."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark from what a test uses, so a new broker, server or browser test cannot land in the
    fast tier by forgetting a marker (fixtures reached through other fixtures count too)."""
    fuzz_dir = REPO / "tests" / "fuzz"
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in FIXTURE_MARKS.items():
            if fixture in used:
                item.add_marker(marker)
        if item.path.is_relative_to(fuzz_dir):
            item.add_marker("fuzz")
        if any(item.get_closest_marker(name) for name in HEAVY):
            item.add_marker("slow")


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
