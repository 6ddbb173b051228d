"""A bounded, reproducible atheris run (coverage-guided, libFuzzer) over every decoder, from a seed
corpus of valid messages, a real JPEG and a camera config: any exception other than the defined
errors makes libFuzzer stop with a crash report and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from facestream import codec
from facestream.camera.spec import CameraSpec
from facestream.messages import ALIGNED_BYTES, BBox, Embedding, Face, Frame, FrameRef, Quality
from tests.fuzz.strategies import sample_jpegs

HARNESS = Path(__file__).with_name("atheris_decoders.py")
RUNS = 150_000


def seeds(faces_dir: Path) -> list[bytes]:
    """One valid input per target, prefixed with the byte that selects it (the harness's order)."""
    ref = FrameRef("cam-1", "cam-1@1", 1_700_000_000_000, "rtsp://cam")
    box, quality = BBox(1, 2, 30, 40), Quality(0.9, 40, 100, 0.1)
    jpeg = sample_jpegs(faces_dir)[0]
    camera = CameraSpec(camera_id="cam-1", url="rtsp://cam", fps=2)
    return [
        bytes([0]) + codec.CAMERAS.encode(camera),
        bytes([1]) + codec.FRAMES.encode(Frame(ref, 96, 64, jpeg)),
        bytes([2])
        + codec.FACES.encode(Face(ref, 0, box, ((1.0, 2.0),) * 5, quality, bytes(ALIGNED_BYTES), jpeg)),
        bytes([3])
        + codec.EMBEDDINGS.encode(Embedding(ref, 0, box, quality, "m", np.full(4, 0.5, np.float32), b"")),
        bytes([8]) + jpeg,
        bytes([9]) + jpeg,
        bytes([10]) + camera.model_dump_json().encode(),
    ]


def test_atheris_finds_nothing_but_defined_errors(faces_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds(faces_dir)):
        (corpus / f"seed-{i}").write_bytes(seed)
    done = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert f"Done {RUNS} runs" in done.stderr, report
    assert not list(tmp_path.glob("crash-*")), report
