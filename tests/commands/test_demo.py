"""`facestream demo` and the bundled sample it runs on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facestream.commands.demo import Manifest, load_manifest, sample_dir
from facestream.settings import ModelSettings
from facestream.vision.faces import FaceFinder
from tests.fixtures.media import REPO_ROOT, facestream_cli, non_log_lines, read

pytestmark = pytest.mark.subprocess  # the real CLI in its own process

SAMPLE = sample_dir()


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return load_manifest(SAMPLE)


def candidates(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def found_in(found: list[dict[str, Any]], name: str) -> list[str]:
    return sorted(c["identity"] for c in found if Path(c["source"]).name == name)


@pytest.fixture(scope="module")
def demo_run(
    model_settings: ModelSettings, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess[str]:
    return facestream_cli("demo", model_dir=model_settings.model_dir, cwd=tmp_path_factory.mktemp("cwd"))


def test_demo_prints_the_expected_candidates(
    demo_run: subprocess.CompletedProcess[str], manifest: Manifest
) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    found = candidates(demo_run.stdout)
    assert all({"identity", "score", "source", "frame_ts", "bbox"} <= c.keys() for c in found)
    assert all(Path(c["source"]).is_relative_to(SAMPLE) for c in found)
    assert found_in(found, "camera.mp4") == ["alex_lacamoire", "obama"]  # one each, not one per frame
    assert found_in(found, "obama_and_biden.jpg") == ["biden", "obama"]
    assert found_in(found, "kit_harington_and_rose_leslie.jpg") == ["rose_leslie"]
    assert not {c["identity"] for c in found} & set(manifest.unenrolled)
    assert len({c["authorisation_id"] for c in found}) == 1


def test_demo_summary_says_who_was_enrolled_what_matched_and_what_did_not(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    summary = demo_run.stderr
    assert "enrolled alex_lacamoire, biden, obama, rose_leslie under authorisation auth_" in summary
    assert "camera.mp4: obama (0." in summary
    assert "kit_harington (not enrolled): no match - as expected" in summary
    assert "bystander (not enrolled): no match - as expected" in summary
    assert "UNEXPECTED" not in summary
    assert "nobody who is not enrolled (kit_harington, bystander) produced anything" in summary
    assert "removed" in summary.splitlines()[-1]
    # only the summary: no log records, no tracebacks
    assert all(line.startswith(("facestream demo: ", "  ")) for line in summary.splitlines())


def test_demo_with_a_kept_gallery_is_idempotent(model_settings: ModelSettings, tmp_path: Path) -> None:
    gallery = tmp_path / "demo-gallery"
    runs = [
        facestream_cli("demo", "--gallery", str(gallery), model_dir=model_settings.model_dir)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert f"kept at {gallery}" in run.stderr
    first, second = (candidates(r.stdout) for r in runs)
    assert sorted(c["entry_id"] for c in first) == sorted(c["entry_id"] for c in second)
    assert {c["authorisation_id"] for c in first} == {c["authorisation_id"] for c in second}
    listed = facestream_cli("gallery", "list", "--gallery", str(gallery), model_dir=model_settings.model_dir)
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["identity"] for line in listed.stdout.splitlines()) == [
        "alex_lacamoire", "biden", "obama", "rose_leslie",
    ]  # fmt: skip


def test_demo_without_models_says_how_to_get_them(tmp_path: Path) -> None:
    result = facestream_cli("demo", model_dir=tmp_path / "no-models")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = non_log_lines(result.stderr)
    assert "facestream models fetch" in line


def test_demo_passes_its_settings_file_on_to_the_commands_it_runs(
    model_settings: ModelSettings, tmp_path: Path
) -> None:
    """The models are only where the --config file says (the default model directory is empty and
    no environment names one): enrolling and identifying find them only if the demo passes the
    file's settings on."""
    config = tmp_path / "facestream.yaml"
    config.write_text(f"model:\n  model_dir: {model_settings.model_dir}\n  execution_provider: cpu\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty-cache")
    script = Path(sys.executable).with_name("facestream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "facestream"]
    result = subprocess.run(
        [*command, "demo", "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "UNEXPECTED" not in result.stderr
    assert len(candidates(result.stdout)) == 5


def test_demo_bad_argument_is_one_line_and_exit_2(model_settings: ModelSettings) -> None:
    result = facestream_cli("demo", "--inference-threads", "0", model_dir=model_settings.model_dir)
    assert result.returncode == 2
    (line,) = non_log_lines(result.stderr)
    assert "--inference-threads" in line


def test_the_sample_is_small_and_documented(manifest: Manifest) -> None:
    files = [p for p in SAMPLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 400_000
    assert (
        "MIT" in (SAMPLE / "README.md").read_text()
        and "face_recognition" in (SAMPLE / "README.md").read_text()
    )
    named = {
        manifest.video.file,
        *(s.file for s in manifest.stills),
        *(p for ps in manifest.enroll.values() for p in ps),
    }
    assert {str(p.relative_to(SAMPLE)) for p in files} == named | {"manifest.json", "README.md"}
    for photos in manifest.enroll.values():
        for photo in photos:
            assert read(SAMPLE / photo).shape[1] <= 320


def test_the_sample_shows_who_the_manifest_says(finder: FaceFinder, manifest: Manifest) -> None:
    """Every person of the manifest is really detected, so "no match" for the unenrolled means
    a face was seen and not matched, not that it was missed."""
    for still in manifest.stills:
        faces = [f for f in finder.find(read(SAMPLE / still.file)) if f.usable]
        assert len(faces) == len(still.people), still.file
    capture = cv2.VideoCapture(str(SAMPLE / manifest.video.file))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        seen: dict[str, int] = {}
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            at = index / fps
            index += 1
            present = [a.person for a in manifest.video.appearances if a.from_s <= at < a.to_s]
            faces = [f for f in finder.find(np.asarray(frame, np.uint8)) if f.usable]
            assert len(faces) == len(present), f"frame {index}"
            for person in present:
                seen[person] = seen.get(person, 0) + 1
    finally:
        capture.release()
    assert fps == manifest.video.fps
    assert set(seen) == {a.person for a in manifest.video.appearances}


def test_the_sample_is_rebuilt_exactly_by_its_script(faces_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sample"
    script = REPO_ROOT / "scripts" / "make_sample.py"
    command = [sys.executable, str(script), "--faces", str(faces_dir), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for committed in SAMPLE.rglob("*"):
        if committed.is_file():
            rebuilt = out / committed.relative_to(SAMPLE)
            assert rebuilt.read_bytes() == committed.read_bytes(), committed.name
