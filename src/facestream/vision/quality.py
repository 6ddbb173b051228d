"""Face quality: the measurements, and the gates that decide which faces are worth embedding.

A face that fails a gate is dropped before it is embedded: a blurred, tiny or strongly
turned face gives an unreliable vector, and not embedding it is also the data-minimising
choice. The reason is counted, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facestream.messages import BBox, Quality
from facestream.vision.detector import Image
from facestream.vision.landmarks import Points


@dataclass(frozen=True, slots=True)
class QualityGates:
    """Thresholds a face must meet; defaults measured on ../shared/data/faces (docs/models.md)."""

    min_score: float = 0.65
    min_face_px: float = 32.0
    min_sharpness: float = 40.0
    max_abs_yaw: float = 0.6

    def rejection(self, quality: Quality) -> str | None:
        """The first gate the face fails, as a metric label, or None if it passes."""
        if quality.det_score < self.min_score:
            return "low_score"
        if quality.size_px < self.min_face_px:
            return "too_small"
        if quality.sharpness < self.min_sharpness:
            return "blurred"
        if abs(quality.yaw) > self.max_abs_yaw:
            return "pose"
        return None


def measure(score: float, box: BBox, five: Points, aligned: Image) -> Quality:
    gray = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    left_eye, right_eye, nose = five[0], five[1], five[2]
    eye_distance = float(np.linalg.norm(right_eye - left_eye))
    eye_mid_x = float(left_eye[0] + right_eye[0]) / 2.0
    yaw = (float(nose[0]) - eye_mid_x) / eye_distance if eye_distance > 1e-3 else 9.0
    return Quality(
        det_score=round(float(score), 4),
        size_px=round(min(box.width, box.height), 1),
        sharpness=round(sharpness, 1),
        yaw=round(yaw, 3),
    )
