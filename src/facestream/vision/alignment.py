"""Similarity alignment of a face onto the standard ArcFace 112x112 template."""

from __future__ import annotations

import cv2
import numpy as np

from facestream.errors import InvalidMessage
from facestream.messages import ALIGNED_SIZE
from facestream.vision.detector import Image
from facestream.vision.landmarks import Points

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def align(image: Image, five: Points) -> Image:
    """Warp the face so its 5 points sit on the template.

    A similarity transform (rotation, uniform scale, shift) keeps the face's proportions;
    the full affine from 3 points that some packages use distorts them and measured much
    worse (../shared/MODELS.md).
    """
    matrix, _ = cv2.estimateAffinePartial2D(five, ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:
        raise InvalidMessage("alignment_failed", "landmarks are degenerate")
    aligned = cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=(0, 0, 0))
    return np.ascontiguousarray(aligned, dtype=np.uint8)
