"""CPU per camera-second of the frame-sampler, OpenCV vs PyAV, on the same H.264 file (issue 10).

Why: a sampler replica's cameras per core is 1 / (CPU seconds per camera-second), and what that
costs is decoding. Both decoders run through the sampler's real code: a CameraWorker (the thread
CameraFleet starts per camera) over the source open_source picks for `decoder: opencv` and
`decoder: pyav`, with the FrameEncoder, publishing into a list (no Kafka producer cost). The file
is 720p 25 fps H.264, 1 s GOP, no B-frames (scalelab/media.py, libx264 veryfast), sampled at
1 fps; one camera-second = one second of media. CPU from time.process_time() (all threads of this
process), median of --repeat runs of each, alternated so both see the same machine load.

    .venv/bin/python load-tests/sampler_decode.py [--seconds 30] [--gop 1] [--fps 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scalelab.media import make_h264_video

from facestream.camera.sampler import Backoff, CameraWorker, FrameEncoder
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.messages import Frame
from facestream.settings import SamplerSettings

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg", "scenes/obama_and_biden.jpg")


def cpu_per_camera_s(path: Path, seconds: float, fps: float, decoder: str) -> tuple[float, int, int | None]:
    """(CPU s per camera-second, frames published, frames decoded where counted) of one run."""
    settings = SamplerSettings()
    spec = CameraSpec(camera_id=f"bench-{decoder}", url=str(path), fps=fps, decoder=decoder)
    source = open_source(spec, default_fps=fps)
    frames: list[Frame] = []
    worker = CameraWorker(
        spec, source, FrameEncoder(settings.jpeg_quality, settings.max_frame_width), frames.append, Backoff()
    )
    cpu = time.process_time()
    worker.start()
    if not worker.finished.wait(600):
        worker.stop()
        raise RuntimeError(f"{decoder}: did not finish in 600 s")
    used = time.process_time() - cpu
    stats = source.decode_stats
    return used / seconds, len(frames), None if stats is None else stats.decoded


def jpeg_cpu_s_per_frame(path: Path, times: int = 30) -> float:
    """CPU seconds of the FrameEncoder (JPEG at the sampler's default quality) per 720p frame: the
    part of the sampler's cost that no decoder choice changes."""
    settings = SamplerSettings()
    encoder = FrameEncoder(settings.jpeg_quality, settings.max_frame_width)
    spec = CameraSpec(camera_id="bench-jpeg", url=str(path), fps=1.0)
    source = open_source(spec, default_fps=1.0)
    source.open()
    captured = source.read()
    source.close()
    assert captured is not None
    cpu = time.process_time()
    for _ in range(times):
        encoder.frame(spec, captured)
    return (time.process_time() - cpu) / times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=30.0, help="media seconds of the file")
    p.add_argument("--gop", type=float, default=1.0, help="GOP in seconds")
    p.add_argument("--fps", type=float, default=1.0, help="sampled frames per second")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = make_h264_video(
            [args.faces / ph for ph in PHOTOS],
            Path(tmp) / "cam720.mp4",
            seconds=args.seconds,
            gop_s=args.gop,
        )
        runs: dict[str, list[float]] = {"opencv": [], "pyav": []}
        published: dict[str, int] = {}
        decoded: dict[str, int | None] = {}
        for _ in range(args.repeat):
            for decoder in runs:
                per_s, published[decoder], decoded[decoder] = cpu_per_camera_s(
                    media.path, media.seconds, args.fps, decoder
                )
                runs[decoder].append(per_s)
        encode_s = jpeg_cpu_s_per_frame(media.path)
    median = {d: statistics.median(v) for d, v in runs.items()}
    report = {
        "media": media.describe(),
        "sampled_fps": args.fps,
        "clock": "time.process_time (CPU, all threads)",
        **{
            decoder: {
                "cpu_s_per_camera_s": round(median[decoder], 4),
                "runs": [round(v, 4) for v in runs[decoder]],
                "cameras_per_core": round(1 / median[decoder], 1),
                "frames_published": published[decoder],
                "frames_decoded": decoded[decoder] if decoded[decoder] is not None else "all",
                "frames_in_file": round(media.seconds * media.fps),
            }
            for decoder in runs
        },
        "opencv_over_pyav": round(median["opencv"] / median["pyav"], 1),
        "of_which_jpeg_encode_cpu_s_per_camera_s": round(encode_s * args.fps, 4),
    }
    print(json.dumps(report, indent=2))
    print(
        f"CPU s per camera-second: opencv {median['opencv']:.4f}, pyav {median['pyav']:.4f}, "
        f"ratio {report['opencv_over_pyav']}x; "
        f"cameras/core {1 / median['opencv']:.1f} -> {1 / median['pyav']:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
