"""Aligned crops put the face where the ArcFace template expects it."""

from __future__ import annotations

import cv2
import numpy as np

from facestream.messages import ALIGNED_SIZE
from facestream.vision.alignment import ARCFACE_TEMPLATE
from facestream.vision.faces import FaceFinder
from tests.fixtures.media import LabelledFace

PAD = 56


def test_eyes_of_aligned_crops_sit_on_the_template(
    finder: FaceFinder, labelled_faces: list[LabelledFace]
) -> None:
    """Measured again on the crop itself: detect and landmark the aligned face (padded so the
    detector sees context) and compare its eyes with the template's eye positions."""
    for face in labelled_faces:
        aligned = face.observation.aligned
        assert aligned.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3)
        padded = cv2.copyMakeBorder(aligned, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        again = finder.find(np.asarray(padded, np.uint8))
        assert again, f"{face.photo.name}/{face.identity}: no face in its own aligned crop"
        eyes = again[0].five[:2] - PAD
        error = np.linalg.norm(eyes - ARCFACE_TEMPLATE[:2], axis=1)
        assert error.max() < 6.0, f"{face.photo.name}/{face.identity}: eyes {eyes.tolist()} off by {error}"


def test_the_crop_is_not_mirrored(labelled_faces: list[LabelledFace]) -> None:
    """The image-left eye stays image-left: five points come left eye first, as the template."""
    for face in labelled_faces:
        left_eye, right_eye = face.observation.five[0], face.observation.five[1]
        assert left_eye[0] < right_eye[0], face.photo.name
