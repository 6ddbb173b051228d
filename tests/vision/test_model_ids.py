"""Model ids fit the gallery filter's alphabet whatever the file is called (issue 12.2), and the ids
existing galleries hold (built-in models, custom files with plain names) are unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from facestream.gallery.store import MAX_FILTER_VALUE, filter_value_problem
from facestream.settings import ModelSettings
from facestream.vision.models import BUILTIN_MODELS, load_model, model_id_for, sha256_of
from tests.fuzz.strategies import fuzz

EMBEDDER = BUILTIN_MODELS["mobilefacenet-arcface-512"]


@given(
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
        st.sampled_from(["arcface r50 (licensed)", "...", "-", "日本語", "modèle été", 'a" or "b', "a\\b"]),
    ),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
@fuzz(500)
def test_any_name_gives_an_id_the_gallery_filter_takes(name: str, sha256: str) -> None:
    model_id = model_id_for(name, sha256)
    assert filter_value_problem(model_id) is None, model_id
    assert model_id.endswith(f"@{sha256[:12]}") and len(model_id) <= MAX_FILTER_VALUE
    assert model_id_for(name, sha256) == model_id  # the same file always names the same model


def test_the_built_in_models_keep_the_ids_their_galleries_hold() -> None:
    assert model_id_for(EMBEDDER.name, EMBEDDER.sha256) == "mobilefacenet-arcface-512@87aacdfe5751"
    for spec in BUILTIN_MODELS.values():
        assert model_id_for(spec.name, spec.sha256) == f"{spec.name}@{spec.sha256[:12]}"


def test_a_model_file_named_with_spaces_and_parentheses_loads_under_a_filter_safe_id(
    model_settings: ModelSettings, tmp_path: Path
) -> None:
    licensed = tmp_path / "arcface r50 (licensed).onnx"
    plain = tmp_path / "my_embedder-v2.1.onnx"
    for copy in (licensed, plain):
        shutil.copyfile(model_settings.model_dir / EMBEDDER.filename, copy)
    digest = sha256_of(licensed.read_bytes())

    assert load_model(str(licensed), digest).model_id == f"arcface-r50-licensed@{digest[:12]}"
    # a name already in the alphabet is kept as it was, so its gallery's entries still match
    assert load_model(str(plain), digest).model_id == f"my_embedder-v2.1@{digest[:12]}"
