"""frames → faces: decode, detect, align, apply the quality gates."""

from __future__ import annotations

from collections.abc import Sequence

from facestream.errors import InvalidMessage
from facestream.imaging import decode_jpeg
from facestream.messages import Face, Frame
from facestream.runtime import metrics
from facestream.stages.base import each
from facestream.vision.faces import FaceFinder, thumbnail_jpeg


class DetectStage:
    name = "detector"

    def __init__(self, finder: FaceFinder, *, max_frame_pixels: int, thumbnail_px: int) -> None:
        self._finder = finder
        self._max_frame_pixels = max_frame_pixels
        self._thumbnail_px = thumbnail_px

    def process(self, items: Sequence[Frame]) -> list[list[Face] | InvalidMessage]:
        return each(items, self.faces_in)

    def faces_in(self, frame: Frame) -> list[Face]:
        image = decode_jpeg(frame.jpeg, max_pixels=self._max_frame_pixels)
        faces: list[Face] = []
        for observation in self._finder.find(image):
            metrics.FACES_DETECTED.inc()
            if observation.rejection is not None:
                metrics.FACES_REJECTED.labels(observation.rejection).inc()
                continue
            faces.append(
                Face(
                    ref=frame.ref,
                    face_index=len(faces),
                    bbox=observation.bbox,
                    landmarks=tuple((float(x), float(y)) for x, y in observation.five),
                    quality=observation.quality,
                    aligned=observation.aligned.tobytes(),
                    thumbnail_jpeg=thumbnail_jpeg(image, observation.bbox, side=self._thumbnail_px),
                )
            )
        return faces
