"""One place that builds onnxruntime sessions, so provider, thread and layout choices are uniform."""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np
import onnxruntime as ort

from facestream.errors import ModelError
from facestream.vision.models import sha256_of

log = logging.getLogger(__name__)

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


LAYOUT_TRANSFORM = "NchwcTransformer"
"""onnxruntime's rewrite of convolutions into its blocked NCHWc layout (level ORT_ENABLE_ALL, CPU).
Usually a gain: the detector and landmark models ran ~3x faster with it on an AVX-512 Xeon. But
MobileFaceNet, the default embedder, ran 3x slower with it on the same CPU (65 against 22 ms of
CPU a face, one thread, onnxruntime 1.31.1) and no slower without it on an AMD EPYC: which way it
goes depends on the model and the CPU, so a CPU session is timed both ways when it is built."""

SWITCH_BELOW = 0.8
"""The session without the layout transform is kept only when it needs under 0.8x the CPU time:
a clear gain, never a coin toss between two timings of the same speed."""

_layout_choice: dict[tuple[str, int], bool] = {}
"""(model sha256, threads) -> whether the layout transform stays: each model timed once a process."""


def create_session(
    model: bytes, *, provider: Provider = "auto", intra_op_threads: int = 1, name: str = "model"
) -> ort.InferenceSession:
    """A session over model bytes (already checksum-verified by the caller).

    One intra-op thread is the default: on small CPUs shared with decoding, a second
    thread measured slower (../shared/MODELS.md); scale with replicas instead. On CPU the session
    is the faster of with and without LAYOUT_TRANSFORM, timed on this machine (a few runs on a
    made-up input, well under a second for the bundled models); on CUDA it is onnxruntime's default.
    """
    providers = choose_providers(provider)
    if providers != ["CPUExecutionProvider"]:
        return _session(model, providers, intra_op_threads, ())
    key = (sha256_of(model), intra_op_threads)
    keep = _layout_choice.get(key)
    if keep is not None:  # timed before in this process: build only the session chosen then
        return _session(model, providers, intra_op_threads, () if keep else (LAYOUT_TRANSFORM,))
    default = _session(model, providers, intra_op_threads, ())
    plain = _session(model, providers, intra_op_threads, (LAYOUT_TRANSFORM,))
    with_ms, plain_ms = cpu_ms_per_run(default), cpu_ms_per_run(plain)
    keep = _layout_choice[key] = keeps_layout_transform(with_ms, plain_ms)
    log.info(
        "%s: onnxruntime's NCHWc layout %s on this CPU (%.1f ms of CPU a run with it, %.1f without)",
        name,
        "kept" if keep else "off, slower",
        with_ms or float("nan"),
        plain_ms or float("nan"),
    )
    return default if keep else plain


def keeps_layout_transform(with_ms: float | None, plain_ms: float | None) -> bool:
    """Whether the session with the layout transform stays: unless the other was clearly faster.
    None: a session that could not be timed (an input it cannot be given), which decides nothing."""
    if with_ms is None or plain_ms is None:
        return True
    return not plain_ms < SWITCH_BELOW * with_ms


def cpu_ms_per_run(session: ort.InferenceSession, runs: int = 4) -> float | None:
    """The least CPU time (process clock) of `runs` runs after one warm-up, on inputs of the
    model's shapes (unknown dimensions 1) filled with values in [0, 1); None when the model takes
    something else."""
    feeds = {}
    for spec in session.get_inputs():
        dtype = _INPUT_TYPES.get(spec.type)
        if dtype is None:
            return None
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        feeds[spec.name] = np.random.default_rng(0).random(shape).astype(dtype)
    try:
        session.run(None, feeds)
        best = float("inf")
        for _ in range(runs):
            started = time.process_time()
            session.run(None, feeds)
            best = min(best, time.process_time() - started)
    except Exception:  # onnxruntime's own errors: a shape the model refuses
        return None
    return best * 1000


_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


def _session(
    model: bytes, providers: list[str], intra_op_threads: int, disabled: tuple[str, ...]
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, options, providers=providers, disabled_optimizers=list(disabled))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load the model: {exc}") from exc
