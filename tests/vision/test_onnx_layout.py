"""A CPU session is the faster of with and without onnxruntime's NCHWc layout transform: what each
choice means in the graph, that both give the same vectors, and when the plain one is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facestream.settings import ModelSettings
from facestream.vision.models import load_model
from facestream.vision.onnx_session import (
    LAYOUT_TRANSFORM,
    cpu_ms_per_run,
    create_session,
    keeps_layout_transform,
)

NCHWC_DOMAIN = "com.microsoft.nchwc"


def optimized_domains(model: bytes, disabled: list[str], out: Path) -> set[str]:
    """The op domains of the graph onnxruntime runs, as it writes it out after optimising."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(model, options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    return {node.domain for node in onnx.load(str(out)).graph.node}


@pytest.mark.parametrize("ref", ["mobilefacenet-arcface-512", "ultraface-rfb320"])
def test_disabling_the_transform_leaves_no_blocked_layout_op(
    ref: str, model_settings: ModelSettings, tmp_path: Path
) -> None:
    """The plain session is really another graph: without this the choice would choose nothing."""
    data = load_model(ref, model_dir=model_settings.model_dir).data
    assert NCHWC_DOMAIN in optimized_domains(data, [], tmp_path / "with.onnx")
    assert NCHWC_DOMAIN not in optimized_domains(data, [LAYOUT_TRANSFORM], tmp_path / "plain.onnx")


def test_either_layout_gives_the_same_vectors(model_settings: ModelSettings) -> None:
    data = load_model("mobilefacenet-arcface-512", model_dir=model_settings.model_dir).data
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    crop = np.random.default_rng(1).random((1, 3, 112, 112)).astype(np.float32)
    outputs = [
        ort.InferenceSession(data, options, providers=["CPUExecutionProvider"], disabled_optimizers=d).run(
            None, {"input": crop}
        )[0]
        for d in ([], [LAYOUT_TRANSFORM])
    ]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-3, atol=1e-4)


def test_the_session_built_runs_and_is_timed(model_settings: ModelSettings) -> None:
    data = load_model("pfld68-64", model_dir=model_settings.model_dir).data
    session = create_session(data, provider="cpu", name="pfld68-64")
    ms = cpu_ms_per_run(session)
    assert ms is not None and ms > 0
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((1, 1, 64, 64), np.float32)})


@pytest.mark.parametrize(
    ("with_ms", "plain_ms", "keeps"),
    [
        (65.0, 22.0, False),  # MobileFaceNet on an AVX-512 Xeon
        (2.2, 6.7, True),  # UltraFace on the same
        (10.0, 8.5, True),  # 15% is within noise: the default stays
        (10.0, 7.9, False),
        (None, 5.0, True),  # could not be timed: nothing decided
        (5.0, None, True),
    ],
)
def test_the_plain_session_is_kept_only_when_clearly_faster(
    with_ms: float | None, plain_ms: float | None, keeps: bool
) -> None:
    assert keeps_layout_transform(with_ms, plain_ms) is keeps
