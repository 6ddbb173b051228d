"""Real H.264 camera files for the sampler tests, encoded by FFmpeg's libx264 (imageio-ffmpeg).

The GOP, B-frames and size are what the PyAV source's cost and choices depend on, so each file
fixes them; the picture is the test photos, slowly zooming and panning (facestream.sample).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from facestream.sample import framed

log = logging.getLogger(__name__)


def make_h264(
    photos: Sequence[Path],
    out: Path,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: float = 25.0,
    seconds: float = 8.0,
    gop_s: float = 1.0,
    b_frames: int = 0,
) -> Path:
    """A closed, fixed GOP of `gop_s` seconds (no scene-cut key frames), `b_frames` B-frames.

    FFmpeg is started again once if it dies while being fed: twice in full suite runs (2026-12-07)
    the encoder exited mid-file with a broken pipe and nothing on stderr, cause not found, failing
    a test before any facestream code ran. A second death is raised."""
    try:
        return _encode(photos, out, size=size, fps=fps, seconds=seconds, gop_s=gop_s, b_frames=b_frames)
    except BrokenPipeError as exc:
        log.warning("ffmpeg died encoding %s (%s); encoding it again", out.name, exc)
        out.unlink(missing_ok=True)
        return _encode(photos, out, size=size, fps=fps, seconds=seconds, gop_s=gop_s, b_frames=b_frames)


def _encode(
    photos: Sequence[Path],
    out: Path,
    *,
    size: tuple[int, int],
    fps: float,
    seconds: float,
    gop_s: float,
    b_frames: int,
) -> Path:
    width, height = size
    gop = max(1, round(gop_s * fps))
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in photos]
    writer = imageio_ffmpeg.write_frames(
        str(out),
        (width, height),
        pix_fmt_in="bgr24",
        fps=fps,
        codec="libx264",
        quality=None,
        macro_block_size=16,
        ffmpeg_log_level="error",
        output_params=[
            "-preset", "veryfast", "-crf", "23", "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-bf", str(b_frames),
        ],
    )  # fmt: skip
    writer.send(None)
    total = round(seconds * fps)
    per_photo = max(1, total // len(images))
    try:
        for i in range(total):
            index = min(i // per_photo, len(images) - 1)
            t = (i - index * per_photo) / max(1, per_photo - 1)
            frame = framed(images[index], width, height, zoom=1.0 + 0.15 * t, shift=t)
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return out


def all_frames(path: Path) -> list[np.ndarray]:
    """Every frame, decoded by OpenCV: the reference pictures."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames
