"""Re-embedding after a model change: the one use of the kept photos. Entries in force are enrolled
again from their decrypted photos with the new model, and keep matching; ended ones are not revived."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings, ModelSettings
from facestream.vision.embedder import with_symbolic_batch
from tests.fixtures.accountability import audit_records, enroll, grant_authorisation, run_cli

pytestmark = pytest.mark.usefixtures("accountability_env")


@pytest.fixture
def new_model(tmp_path: Path, model_settings: ModelSettings) -> list[str]:
    """Another model file (same weights, a symbolic batch: a different checksum, so a different
    model_id), as the embedder flags an operator would pass."""
    data = with_symbolic_batch((model_settings.model_dir / "mobilefacenet-arcface-512.onnx").read_bytes())
    path = tmp_path / "embedder-v2.onnx"
    path.write_bytes(data)
    return ["--embedder-model", str(path), "--embedder-model-sha256", hashlib.sha256(data).hexdigest()]


def model_ids(gallery: Path) -> dict[str, set[str]]:
    g = Gallery(GallerySettings(gallery=str(gallery)))
    try:
        out: dict[str, set[str]] = {}
        for e in g.entries():
            out.setdefault(e.model_id, set()).add(e.identity)
        return out
    finally:
        g.close()


def test_reembed_moves_entries_in_force_to_the_new_model(
    tmp_path: Path, faces_dir: Path, new_model: list[str]
) -> None:
    gallery = tmp_path / "gallery"
    live, ended = grant_authorisation(gallery, case="LIVE"), grant_authorisation(gallery, case="ENDED")
    assert enroll(gallery, "obama", live, *sorted((faces_dir / "enroll").glob("obama_*.jpg"))).status == 0
    assert enroll(gallery, "biden", ended, faces_dir / "enroll" / "biden_1.jpg").status == 0
    assert run_cli("authorisation", "revoke", "--gallery", str(gallery), ended).status == 0
    (old_model,) = model_ids(gallery)

    probe = str(faces_dir / "probe" / "obama.jpg")
    before = run_cli("identify", "--gallery", str(gallery), *new_model, probe)
    assert before.status == 0 and before.json() == []  # new-model faces never meet old-model vectors

    result = run_cli("gallery", "reembed", "--gallery", str(gallery), "--drop-old", *new_model)
    assert result.status == 0, result.stderr
    (summary,) = result.json()
    assert (summary["reembedded"], summary["dropped"], summary["refused"]) == (2, 2, [])
    (new_id,) = model_ids(gallery)
    assert new_id == summary["model_id"] != old_model
    assert model_ids(gallery) == {new_id: {"obama"}}  # biden's authorisation had ended: not revived

    after = run_cli("identify", "--gallery", str(gallery), *new_model, probe)
    assert [c["identity"] for c in after.json()] == ["obama"]
    assert len(list((gallery / "photos" / live).glob("*.enc"))) == 2  # kept for the next change
    reembeds = [
        r for r in audit_records(gallery) if r.action == "gallery.enroll" and r.objects.get("reembed")
    ]
    assert [(r.authorisation_id, r.objects["identity"], len(r.objects["entries"])) for r in reembeds] == [
        (live, "obama", 2)
    ]
