"""Issue 12.2, end to end through the real CLI: an operator's embedder file named with spaces and
parentheses (docs/models.md: a path with its sha256) enrolls and identifies like any other; a
gallery an older facestream enrolled under that file's old, unquotable model id neither crashes
`identify` nor matches, and `gallery reembed --drop-old` brings it back; and a bad model flag is
one line on stderr, not a traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facestream.settings import ModelSettings
from facestream.vision.models import BUILTIN_MODELS, sha256_of
from tests.commands.identify_output import noise, stdout_objects
from tests.fixtures.media import facestream_cli, grant_authorisation, non_log_lines

pytestmark = pytest.mark.subprocess  # the real CLI in its own process

LICENSED = "arcface r50 (licensed).onnx"

LEGACY_IDS = """
import sys
from pymilvus import MilvusClient
from facestream.gallery.store import partition_of
from facestream.messages import stable_id
db, collection, old_id = sys.argv[1:]
client = MilvusClient(db)
client.load_collection(collection)
fields = ["entry_id", "identity", "authorisation_id", "model_id", "photo_id", "enrolled_at_ms",
          "valid_until_ms", "vector"]
rows = client.query(collection, filter='entry_id != ""', output_fields=fields)
client.delete(collection, ids=[row["entry_id"] for row in rows])
for row in rows:
    # entry ids were derived from the model id too (gallery/enroll.py: entry_id_for)
    entry_id = stable_id("entry", row["entry_id"], old_id)
    row = {**row, "model_id": old_id, "entry_id": entry_id}
    client.upsert(collection, [row], partition_name=partition_of(row["authorisation_id"]))
client.flush(collection)
print(len(rows))
"""
"""What facestream before issue 12.2 stored for a file named with spaces: the raw name in the id."""


@pytest.fixture
def licensed_model(model_settings: ModelSettings, tmp_path: Path) -> tuple[Path, str]:
    """The built-in embedder's weights under an operator's file name, and their sha256."""
    path = tmp_path / "models dir" / LICENSED
    path.parent.mkdir()
    shutil.copyfile(model_settings.model_dir / BUILTIN_MODELS["mobilefacenet-arcface-512"].filename, path)
    return path, sha256_of(path.read_bytes())


def run(*args: str, model_dir: Path) -> subprocess.CompletedProcess[str]:
    return facestream_cli(*args, model_dir=model_dir)


def found(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(identity, model id) of each candidate; the run must have ended well, with no traceback."""
    assert result.returncode == 0, result.stderr
    assert noise(result.stderr) == [], result.stderr
    return [(c["identity"], c["model_id"]) for c in stdout_objects(result.stdout)[0]]


def one_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    (line,) = non_log_lines(result.stderr)
    assert re.match(r"facestream( [a-z-]+)*: error: ", line), line
    return line


def test_identify_with_a_model_file_named_with_spaces_and_parentheses(
    licensed_model: tuple[Path, str], model_settings: ModelSettings, faces_dir: Path, tmp_path: Path
) -> None:
    model, digest = licensed_model
    flags = ["--embedder-model", str(model), "--embedder-model-sha256", digest]
    models = model_settings.model_dir
    gallery = str(tmp_path / "gallery")
    auth = grant_authorisation(gallery, model_dir=models)
    enroll = [str(faces_dir / "enroll" / f"obama_{n}.jpg") for n in (1, 2)]
    enrolled = run(
        "gallery", "enroll", "--gallery", gallery, "--authorisation", auth, "--identity", "obama", *flags,
        *enroll, model_dir=models,
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    probe = str(faces_dir / "probe" / "obama.jpg")
    model_id = f"arcface-r50-licensed@{digest[:12]}"

    def identify() -> subprocess.CompletedProcess[str]:
        return run("identify", "--gallery", gallery, *flags, probe, model_dir=models)

    assert found(identify()) == [("obama", model_id)]

    # A gallery enrolled by an older facestream holds the raw name in the id: no crash, no match ...
    old_id = f"arcface r50 (licensed)@{digest[:12]}"
    legacy = subprocess.run(
        [sys.executable, "-c", LEGACY_IDS, f"{gallery}/milvus.db", "watchlist", old_id],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert legacy.returncode == 0 and legacy.stdout.split() == ["2"], legacy.stderr
    assert found(identify()) == []
    # ... until its entries are re-embedded under the new id, from the kept photos.
    reembedded = run("gallery", "reembed", "--gallery", gallery, "--drop-old", *flags, model_dir=models)
    assert reembedded.returncode == 0, reembedded.stderr
    summary = json.loads(reembedded.stdout)
    assert (summary["model_id"], summary["reembedded"], summary["dropped"]) == (model_id, 2, 2)
    assert found(identify()) == [("obama", model_id)]


def test_a_bad_model_flag_is_one_line(
    licensed_model: tuple[Path, str], model_settings: ModelSettings, faces_dir: Path, tmp_path: Path
) -> None:
    model, digest = licensed_model
    models, probe = model_settings.model_dir, str(faces_dir / "probe" / "obama.jpg")
    gallery = str(tmp_path / "gallery")

    missing = run(
        "identify", "--gallery", gallery, "--embedder-model", str(model.with_name("no such (model).onnx")),
        "--embedder-model-sha256", digest, probe, model_dir=models,
    )  # fmt: skip
    assert "neither a built-in model" in one_line(missing, 2)
    swapped = run(
        "identify", "--gallery", gallery, "--embedder-model", str(model), "--embedder-model-sha256", "0" * 64,
        probe, model_dir=models,
    )  # fmt: skip
    assert "fails its checksum" in one_line(swapped, 1)
