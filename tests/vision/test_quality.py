"""The quality gates drop degraded faces, each with the label of the gate that failed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facestream.vision.faces import FaceFinder
from tests.fixtures.media import read


def test_a_sharp_frontal_face_passes(finder: FaceFinder, faces_dir: Path) -> None:
    (face,) = finder.find(read(faces_dir / "enroll" / "obama_1.jpg"))
    assert face.rejection is None
    assert face.usable


def test_a_blurred_copy_is_rejected_as_blurred(finder: FaceFinder, faces_dir: Path) -> None:
    image = read(faces_dir / "enroll" / "obama_1.jpg")
    blurred = np.asarray(cv2.GaussianBlur(image, (0, 0), sigmaX=7), np.uint8)
    faces = finder.find(blurred)
    assert len(faces) == 1, "the blurred face must still be detected, so the gate is what drops it"
    assert faces[0].rejection == "blurred"
    assert faces[0].quality.sharpness < finder.gates.min_sharpness
    assert faces[0].quality.size_px >= finder.gates.min_face_px


def test_a_tiny_face_is_rejected_as_too_small(finder: FaceFinder, faces_dir: Path) -> None:
    image = read(faces_dir / "enroll" / "obama_1.jpg")
    tiny = np.asarray(cv2.resize(image, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA), np.uint8)
    faces = finder.find(tiny)
    assert len(faces) == 1, "the tiny face must still be detected, so the gate is what drops it"
    assert faces[0].rejection == "too_small"
    assert faces[0].quality.size_px < finder.gates.min_face_px
