"""Detect → landmarks → align → measure: the one path every face takes.

The detector stage and enrollment both call `FaceFinder`, so a watchlist photo and a
camera frame are prepared identically; otherwise their vectors would not be comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facestream.messages import BBox, Quality
from facestream.vision.alignment import align
from facestream.vision.detector import FaceDetector, Image
from facestream.vision.landmarks import Landmarker, Points, five_points
from facestream.vision.quality import QualityGates, measure


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One detected face, aligned and measured; `rejection` names the failed gate, if any."""

    bbox: BBox
    five: Points
    quality: Quality
    aligned: Image
    rejection: str | None

    @property
    def usable(self) -> bool:
        return self.rejection is None


class FaceFinder:
    def __init__(self, detector: FaceDetector, landmarker: Landmarker, gates: QualityGates) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.gates = gates

    def find(self, image: Image) -> list[FaceObservation]:
        """Every detection, measured; callers keep only the `usable` ones."""
        observations = []
        for detection in self.detector.detect(image):
            five = five_points(self.landmarker.landmarks(image, detection.bbox))
            aligned = align(image, five)
            quality = measure(detection.score, detection.bbox, five, aligned)
            observations.append(
                FaceObservation(detection.bbox, five, quality, aligned, self.gates.rejection(quality))
            )
        return observations


def thumbnail_jpeg(image: Image, box: BBox, *, side: int = 128, quality: int = 85) -> bytes:
    """A JPEG of the face with some context, for the reviewer; at most `side` pixels high."""
    height, width = image.shape[:2]
    margin = 0.3 * max(box.width, box.height)
    x1 = int(max(0, box.x1 - margin))
    y1 = int(max(0, box.y1 - margin))
    x2 = int(min(width, box.x2 + margin))
    y2 = int(min(height, box.y2 + margin))
    crop = image[y1:y2, x1:x2]
    if crop.size == 0:
        return b""
    if crop.shape[0] > side:
        scale = side / crop.shape[0]
        size = (max(1, int(crop.shape[1] * scale)), side)
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(buf.tobytes()) if ok else b""
