"""Real H.264 test media for the load tests, encoded by FFmpeg's libx264 (imageio-ffmpeg's binary).

City cameras send H.264 with a fixed GOP (a key frame every 1-2 s), and an H.264 decoder must
decode every frame of a GOP to reach any one of them; the mp4v files of facestream.sample do not
show that cost. One helper makes such files so no part copies FFmpeg command lines, and it says
what it made (GOP, bitrate), since the decode cost depends on both.

The picture is the test photos shown one after another, slowly zooming and panning (as
facestream.sample does), with a little sensor-like noise so the bitrate is a camera's (a few
Mbit/s at 720p), not the near-zero of a still picture.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import imageio_ffmpeg
import numpy as np

from facestream.sample import framed  # the same zoom and pan as the demo's and tests' videos


@dataclass(frozen=True)
class H264Media:
    """A file made by make_h264_video, with what the sampler's cost depends on."""

    path: Path
    width: int
    height: int
    fps: float
    gop_frames: int
    seconds: float
    bytes: int
    profile: str
    preset: str
    crf: int
    b_frames: int = 0

    @property
    def kbps(self) -> float:
        return round(8 * self.bytes / self.seconds / 1000, 1)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description, for reports."""
        out = asdict(self)
        out["path"] = self.path.name
        out["kbps"] = self.kbps
        out["gop_s"] = round(self.gop_frames / self.fps, 3)
        return out


def ffmpeg_exe() -> str:
    """The FFmpeg binary bundled with imageio-ffmpeg (has libx264)."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_h264_video(
    photos: Sequence[Path],
    out: Path,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: float = 25.0,
    seconds: float = 10.0,
    gop_s: float = 1.0,
    crf: int = 23,
    preset: str = "veryfast",
    profile: str = "main",
    noise: int = 6,
    b_frames: int = 0,
) -> H264Media:
    """Encode `seconds` of the photos (each an equal share, zooming and panning) as H.264 MP4.

    A closed, fixed GOP of `gop_s` seconds (no scene-cut key frames), yuv420p, no B-frames (as most
    IP cameras send) unless `b_frames`: then up to that many between references, none of them a
    reference itself (no pyramid). `noise` is the amplitude of the added noise in grey levels (0: none).
    """
    width, height = size
    gop = max(1, round(gop_s * fps))
    total = max(1, round(seconds * fps))
    images = []
    for path in photos:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        images.append(image)
    if not images:
        raise ValueError("no photos")
    rng = np.random.default_rng(0)
    # a few noise fields, cycled with a period longer than the encoder's reference window
    fields = [rng.integers(-noise, noise + 1, (height, width, 3)).astype(np.int16) for _ in range(7)]
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
            "-preset", preset, "-profile:v", profile, "-crf", str(crf),
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(b_frames),
            "-b-pyramid", "none",
            "-movflags", "+faststart",
        ],
    )  # fmt: skip
    writer.send(None)
    per_photo = max(1, total // len(images))
    try:
        for i in range(total):
            index = min(i // per_photo, len(images) - 1)
            t = (i - index * per_photo) / max(1, per_photo - 1)
            frame = framed(images[index], width, height, zoom=1.0 + 0.15 * t, shift=t)
            if noise:
                frame = np.clip(frame.astype(np.int16) + fields[i % len(fields)], 0, 255).astype(np.uint8)
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    size = out.stat().st_size
    return H264Media(out, width, height, fps, gop, total / fps, size, profile, preset, crf, b_frames)


def probe_codec(path: Path) -> str:
    """The first video stream's codec as FFmpeg reports it (e.g. 'h264 (Main)'), to check a file."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=30
    )
    for line in result.stderr.splitlines():
        if "Video:" in line:
            return line.split("Video:", 1)[1].split(",")[0].strip()
    return "unknown"
