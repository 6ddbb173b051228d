"""Camera videos made from still photos, for the demo, the tests and the load tests.

Each photo is shown for `seconds_each`, slowly zooming and panning so consecutive frames
differ (a frozen picture would be flagged by the camera monitor), with an optional gap of
empty background between photos, which ends an episode when longer than the episode gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from facestream.errors import ConfigError


def make_camera_video(
    photos: Sequence[Path],
    out: Path,
    *,
    size: tuple[int, int] = (640, 480),
    fps: float = 10.0,
    seconds_each: float = 3.0,
    gap_seconds: float = 0.0,
) -> Path:
    """Write an MPEG-4 video of the photos to `out` and return it."""
    width, height = size
    fourcc = cv2.VideoWriter.fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(out), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise ConfigError(f"cannot write video {out}")
    background = np.full((height, width, 3), 90, np.uint8)
    try:
        for index, path in enumerate(photos):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ConfigError(f"{path}: not a readable image")
            frames = max(1, round(seconds_each * fps))
            for i in range(frames):
                t = i / max(1, frames - 1)
                writer.write(framed(image, width, height, zoom=1.0 + 0.15 * t, shift=t))
            if gap_seconds > 0 and index < len(photos) - 1:
                for i in range(round(gap_seconds * fps)):
                    frame = background.copy()
                    cv2.putText(frame, str(i), (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (200, 200, 200), 2)
                    writer.write(frame)
    finally:
        writer.release()
    return out


def framed(image: np.ndarray, width: int, height: int, *, zoom: float, shift: float) -> np.ndarray:
    """The photo fitted into the frame, zoomed by `zoom` and panned by `shift` (0..1)."""
    scale = min(width / image.shape[1], height / image.shape[0]) * zoom
    resized = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))))
    canvas = np.full((height, width, 3), 90, np.uint8)
    dx = int((width - resized.shape[1]) / 2 + (shift - 0.5) * 0.05 * width)
    dy = int((height - resized.shape[0]) / 2)
    x0, y0 = max(0, dx), max(0, dy)
    sx, sy = max(0, -dx), max(0, -dy)
    w = min(width - x0, resized.shape[1] - sx)
    h = min(height - y0, resized.shape[0] - sy)
    canvas[y0 : y0 + h, x0 : x0 + w] = resized[sy : sy + h, sx : sx + w]
    return canvas
