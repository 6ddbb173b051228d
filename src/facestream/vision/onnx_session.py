"""One place that builds onnxruntime sessions, so provider and thread choices are uniform."""

from __future__ import annotations

from typing import Literal

import onnxruntime as ort

from facestream.errors import ModelError

Provider = Literal["auto", "cpu", "cuda"]


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def choose_providers(provider: Provider) -> list[str]:
    """CUDA when asked for (or when `auto` and onnxruntime-gpu sees a GPU), else CPU."""
    have = available_providers()
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" not in have:
            raise ModelError(
                "execution provider 'cuda' requested but onnxruntime has no CUDA provider "
                "(install facestream[gpu] on a machine with an NVIDIA GPU)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(
    model: bytes, *, provider: Provider = "auto", intra_op_threads: int = 1
) -> ort.InferenceSession:
    """A session over model bytes (already checksum-verified by the caller).

    One intra-op thread is the default: on small CPUs shared with decoding, a second
    thread measured slower (../shared/MODELS.md); scale with replicas instead.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=choose_providers(provider))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load the model: {exc}") from exc
