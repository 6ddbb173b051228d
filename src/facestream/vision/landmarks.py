"""68-point facial landmarks, and the 5 points alignment needs."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from facestream.errors import ModelError
from facestream.messages import BBox
from facestream.vision.detector import Image
from facestream.vision.models import LoadedModel
from facestream.vision.onnx_session import Provider, create_session

Points = npt.NDArray[np.float32]


class Landmarker(Protocol):
    """Returns 68 (x, y) landmarks in image pixels for a face box."""

    def landmarks(self, image: Image, box: BBox) -> Points: ...


class Pfld68Landmarker:
    """A 64x64 grayscale 68-point landmark net.

    The crop is a square of side = box height, centred on the box horizontally and aligned
    to its top, which is how the model's own package prepares it; points come out in [0,1]
    of that crop.
    """

    INPUT = 64

    def __init__(self, model: LoadedModel, *, provider: Provider = "auto", threads: int = 1) -> None:
        self.model_id = model.model_id
        self._session = create_session(
            model.data, provider=provider, intra_op_threads=threads, name=model.model_id
        )
        inp = self._session.get_inputs()[0]
        if list(inp.shape)[1:] != [1, self.INPUT, self.INPUT]:
            raise ModelError(f"landmark input must be [1,1,64,64], got {inp.shape}")
        self._input_name = inp.name

    def landmarks(self, image: Image, box: BBox) -> Points:
        side = max(box.height, 1.0)
        left = (box.x1 + box.x2) / 2.0 - side / 2.0
        top = box.y1
        scale = self.INPUT / side
        warp = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]], np.float32)
        crop = cv2.warpAffine(image, warp, (self.INPUT, self.INPUT), borderMode=cv2.BORDER_REPLICATE)
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32) / 256.0
        out = self._session.run(None, {self._input_name: gray[None, None]})[0]
        points = np.asarray(out, np.float32).reshape(68, 2)
        return points * side + np.array([left, top], np.float32)


def five_points(points68: Points) -> Points:
    """Eyes, nose tip and mouth corners from the 68-point (iBUG) layout, 0-based indices."""
    p = points68
    return np.array(
        [
            p[[37, 38, 40, 41]].mean(axis=0),
            p[[43, 44, 46, 47]].mean(axis=0),
            p[30],
            p[[48, 60]].mean(axis=0),
            p[[54, 64]].mean(axis=0),
        ],
        np.float32,
    )
