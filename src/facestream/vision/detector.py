"""Face detectors: one small interface, backends chosen by a typed `type` setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from facestream.errors import ModelError
from facestream.messages import BBox
from facestream.vision.models import LoadedModel
from facestream.vision.onnx_session import Provider, create_session

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Detection:
    bbox: BBox
    score: float


class FaceDetector(Protocol):
    """Finds faces in a BGR image; returns boxes in that image's pixels, best first."""

    model_id: str

    def detect(self, image: Image) -> list[Detection]: ...


class UltraFaceDetector:
    """Ultra-Light-Fast-Generic-Face-Detector (RFB-320 layout).

    Softmax and prior decoding are inside this graph: `boxes` come out as x1,y1,x2,y2 in
    [0,1] and `scores[..., 1]` is the face probability, so post-processing is only a
    threshold and NMS. The frame is resized to the network's fixed 320x240 input.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        score_threshold: float = 0.65,
        nms_iou: float = 0.4,
        provider: Provider = "auto",
        threads: int = 1,
    ) -> None:
        self.model_id = model.model_id
        self._session = create_session(
            model.data, provider=provider, intra_op_threads=threads, name=model.model_id
        )
        inputs = self._session.get_inputs()
        shape = inputs[0].shape
        if len(shape) != 4 or not isinstance(shape[2], int) or not isinstance(shape[3], int):
            raise ModelError(f"detector input must be [1,3,H,W], got {shape}")
        self._input_name = inputs[0].name
        self._size = (shape[3], shape[2])
        outputs = {o.name for o in self._session.get_outputs()}
        if not {"scores", "boxes"} <= outputs:
            raise ModelError(f"detector must output 'scores' and 'boxes', got {sorted(outputs)}")
        self._score_threshold = score_threshold
        self._nms_iou = nms_iou

    def detect(self, image: Image) -> list[Detection]:
        height, width = image.shape[:2]
        resized = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        tensor = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self._session.run(["scores", "boxes"], {self._input_name: tensor})
        face_scores = scores[0, :, 1]
        keep = face_scores >= self._score_threshold
        if not keep.any():
            return []
        face_scores = face_scores[keep]
        pixel_boxes = boxes[0][keep] * np.array([width, height, width, height], np.float32)
        xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in pixel_boxes]
        chosen = cv2.dnn.NMSBoxes(xywh, face_scores.tolist(), 0.0, self._nms_iou)
        detections = []
        for i in np.asarray(chosen).reshape(-1):
            x1, y1, x2, y2 = (float(v) for v in pixel_boxes[i])
            box = BBox(max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if box.width > 1 and box.height > 1:
                detections.append(Detection(box, float(face_scores[i])))
        detections.sort(key=lambda d: d.score, reverse=True)
        return detections
