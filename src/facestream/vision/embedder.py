"""Face embedders: aligned 112x112 crops in, L2-normalised vectors out."""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import onnx

from facestream.errors import ModelError
from facestream.messages import ALIGNED_SIZE
from facestream.vision.models import LoadedModel
from facestream.vision.onnx_session import Provider, create_session

Vectors = npt.NDArray[np.float32]


class FaceEmbedder(Protocol):
    model_id: str
    dim: int

    def embed(self, aligned: npt.NDArray[np.uint8]) -> Vectors:
        """(N, 112, 112, 3) uint8 BGR crops -> (N, dim) float32, each row of unit length."""
        ...


def with_symbolic_batch(model_bytes: bytes) -> bytes:
    """Make dim 0 of the input and output symbolic, and any Reshape to [1, -1] batch-safe.

    The shipped graph is fixed to batch 1 and ends in Reshape([1, -1]); with a symbolic
    batch and Reshape([-1, D]) it gives identical vectors and can batch on a GPU.
    """
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    out_dims = graph.output[0].type.tensor_type.shape.dim
    width = out_dims[1].dim_value if len(out_dims) > 1 else 0
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in initializers:
            shape = onnx.numpy_helper.to_array(initializers[node.input[1]])
            if shape.tolist() == [1, -1] and width:
                new = onnx.numpy_helper.from_array(np.array([-1, width], np.int64), node.input[1])
                initializers[node.input[1]].CopyFrom(new)
    model.ir_version = min(model.ir_version, 10)
    return bytes(model.SerializeToString())


class ArcFaceEmbedder:
    """An ArcFace-style embedder over (x - 127)/128 input, compared by cosine.

    `channel_order` is configurable because models differ: the shipped MobileFaceNet
    separated identities better when fed BGR (measured in tests/vision/test_calibration.py).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        channel_order: Literal["bgr", "rgb"] = "bgr",
        provider: Provider = "auto",
        threads: int = 1,
    ) -> None:
        self.model_id = model.model_id
        self._session = create_session(
            with_symbolic_batch(model.data), provider=provider, intra_op_threads=threads, name=model.model_id
        )
        inp = self._session.get_inputs()[0]
        if list(inp.shape)[1:] != [3, ALIGNED_SIZE, ALIGNED_SIZE]:
            raise ModelError(f"embedder input must be [N,3,112,112], got {inp.shape}")
        self._input_name = inp.name
        out_shape = self._session.get_outputs()[0].shape
        self.dim = int(out_shape[-1]) if isinstance(out_shape[-1], int) else 512
        self._rgb = channel_order == "rgb"

    def embed(self, aligned: npt.NDArray[np.uint8]) -> Vectors:
        if aligned.ndim != 4 or aligned.shape[1:] != (ALIGNED_SIZE, ALIGNED_SIZE, 3):
            raise ValueError(f"expected (N,112,112,3) crops, got {aligned.shape}")
        pixels = aligned[..., ::-1] if self._rgb else aligned
        tensor = ((pixels.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
        raw = np.asarray(self._session.run(None, {self._input_name: tensor})[0], np.float32)
        raw = raw.reshape(len(aligned), -1)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.asarray(raw / np.maximum(norms, 1e-12), np.float32)
