"""The gallery's index settings in the chart reach every pod that opens the gallery, as the code reads them.

A city-scale gallery needs HNSW and a search ef chosen by measurement (docs/operations.md, Gallery);
a value that renders but never reaches the matcher, or reaches it under a name GallerySettings does
not read, would silently leave the gallery on FLAT or on the default ef.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from facestream.settings import GallerySettings
from tests.fixtures.helm import CHART, Rendered, RenderResult

Render = Callable[..., RenderResult]

VALUE_TO_FIELD = {
    "type": "index_type",
    "hnswM": "hnsw_m",
    "hnswEfConstruction": "hnsw_ef_construction",
    "searchEf": "search_ef",
    "ivfNlist": "ivf_nlist",
    "ivfNprobe": "ivf_nprobe",
}
"""gallery.index.<key> -> GallerySettings.<field> (env FACESTREAM_GALLERY_<FIELD>)."""


def env_name(field: str) -> str:
    return "FACESTREAM_GALLERY_" + field.upper()


def containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            spec = obj["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                out.append((obj["metadata"]["name"], c))
    return out


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_index_defaults_equal_the_code() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gallery"]["index"]
    assert set(values) == set(VALUE_TO_FIELD)
    defaults = GallerySettings()
    assert {key: getattr(defaults, field) for key, field in VALUE_TO_FIELD.items()} == values


def test_index_values_reach_the_matchers_env_and_the_code_reads_them(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = {"type": "HNSW", "hnswM": 32, "hnswEfConstruction": 360, "searchEf": 256, "ivfNlist": 4096,
              "ivfNprobe": 64}  # fmt: skip
    result = render(sets=[f"gallery.index.{key}={value}" for key, value in chosen.items()])
    assert result.returncode == 0, result.stderr
    matchers = [c for name, c in containers(result.objects) if name.endswith("-matcher")]
    assert len(matchers) == 1
    env = plain_env(matchers[0])
    for key, field in VALUE_TO_FIELD.items():
        assert env[env_name(field)] == str(chosen[key]), key
    # the names and values are what GallerySettings reads
    for name, value in env.items():
        if name.startswith("FACESTREAM_GALLERY_"):
            monkeypatch.setenv(name, value)
    settings = GallerySettings()
    assert {key: getattr(settings, field) for key, field in VALUE_TO_FIELD.items()} == chosen


def test_every_pod_that_opens_the_gallery_gets_the_index(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        openers = [(n, c) for n, c in containers(variant.objects) if "FACESTREAM_GALLERY" in plain_env(c)]
        assert openers, f"{variant.name}: no pod opens the gallery"
        values = yaml.safe_load(variant.values_file.read_text()).get("gallery", {}).get("index", {})
        for name, container in openers:
            env = plain_env(container)
            missing = {env_name(f) for f in VALUE_TO_FIELD.values()} - set(env)
            assert not missing, f"{variant.name} {name}: {missing}"
            for key, value in values.items():
                assert env[env_name(VALUE_TO_FIELD[key])] == str(value), f"{variant.name} {name}: {key}"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["gallery.index.type=IVF_PQ"], "type"),
        (["gallery.index.hnswM=100"], "hnswM"),
        (["gallery.index.searchEf=0"], "searchEf"),
        (["gallery.index.efSearch=64"], "additional properties 'efSearch' not allowed"),
    ],
)
def test_bad_index_values_are_refused(render: Render, sets: list[str], message: str) -> None:
    result = render(sets=sets)
    assert result.returncode != 0, f"{sets} rendered"
    assert message in result.stderr, result.stderr
