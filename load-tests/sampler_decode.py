"""CPU per camera-second of the frame-sampler, OpenCV vs PyAV, on the same H.264 file (issue 10).

Why: a sampler replica's cameras per core is 1 / (CPU seconds per camera-second), and what that
costs is decoding. Both decoders run through the sampler's real code: a CameraWorker (the thread
CameraFleet starts per camera) over the source open_source picks for `decoder: opencv` and
`decoder: pyav`, with the FrameEncoder, publishing into a list (no Kafka producer cost). The file
is 720p 25 fps H.264, 1 s GOP, no B-frames (scalelab/media.py, libx264 veryfast), sampled at
1 fps; one camera-second = one second of media. Live rows (--live-seconds): the same file played
in real time by a child process (not counted), one camera-second = one wall second, over two
transports: `tcp_mpegts`, FFmpeg playing MPEG-TS over tcp:// (a restreamer), and `rtsp`, RTP
(RFC 6184) interleaved in RTSP's TCP connection as IP cameras send it (tests/fixtures/rtsp_h264.py).
CPU from time.process_time() (all threads of this process); file rows: median of --repeat runs
of each, live rows of --live-repeat, alternated so all see the same machine load. The
`pyav_floor` row is PyAV alone, no sampler code, decoding what any sampler at that rate must
(each GOP from its key frame up to its last sample, each sample converted to BGR): the sampler's
own overhead is its figure over this. Live `pyav` is the sampler as configured by default (reads
in bursts, camera/read_pacing.py), `pyav_every_packet` the same reading each packet as it comes.
`demux_only`: PyAV demuxing the live stream without decoding, what being live costs.

    .venv/bin/python load-tests/sampler_decode.py [--seconds 30] [--gop 1] [--fps 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import av
from scalelab.media import ffmpeg_exe, make_h264_video

from facestream.camera.pyav import DecodeStats
from facestream.camera.sampler import Backoff, CameraWorker, FrameEncoder
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.messages import Frame
from facestream.settings import SamplerSettings

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg", "scenes/obama_and_biden.jpg")


def sample_file(path: Path, fps: float, decoder: str) -> tuple[float, list[Frame], DecodeStats | None]:
    """(CPU s, the frames published, the decoder's counts where it keeps them) of the sampler's real
    code over the whole file: a CameraWorker with the FrameEncoder, publishing into a list."""
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
    return time.process_time() - cpu, frames, source.decode_stats


def cpu_per_camera_s(path: Path, seconds: float, fps: float, decoder: str) -> tuple[float, int, int | None]:
    """(CPU s per camera-second, frames published, frames decoded where counted) of one run."""
    used, frames, stats = sample_file(path, fps, decoder)
    return used / seconds, len(frames), None if stats is None else stats.decoded


def floor_cpu_per_camera_s(path: Path, seconds: float, fps: float) -> tuple[float, int]:
    """(CPU s per camera-second, frames decoded) of PyAV alone: in each GOP, the frames from its key
    frame up to the first frame at or past each grid point (every 1/fps s from the first frame)
    are decoded, and those samples converted to BGR; nothing else. One decoder thread, as the
    sampler's. Assumes no B-frames (decode order = display order), as scalelab's files have."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    interval = 1.0 / fps
    assert stream.time_base is not None
    time_base = float(stream.time_base)
    decoded = 0
    cpu = time.process_time()

    def sample_gop(gop: list[Any], next_key_s: float | None) -> None:
        nonlocal decoded
        times = [float(pk.pts or 0) * time_base for pk in gop]
        picks: set[int] = set()
        grid = -(-round(times[0] / interval, 6) // 1) * interval  # the first grid point >= the key frame
        end = next_key_s if next_key_s is not None else times[-1] + 1e-6
        while grid < end - 1e-6:
            picks.add(next(i for i, t in enumerate(times) if t >= grid - 1e-6))
            grid += interval
        last = max(picks, default=-1)
        for i in range(last + 1):
            for frame in gop[i].decode():
                decoded += 1
                if i in picks:
                    frame.to_ndarray(format="bgr24")

    gop: list[Any] = []  # av.Packet
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if packet.is_keyframe and gop:
            sample_gop(gop, float(packet.pts or 0) * time_base)
            gop = []
        gop.append(packet)
    if gop:
        sample_gop(gop, None)
    used = time.process_time() - cpu
    container.close()
    return used / seconds, decoded


def every_frame_ms(path: Path) -> tuple[float, float]:
    """CPU ms per frame decoding every frame of the file, one thread: (PyAV, FFmpeg's own command
    line). Equal figures say PyAV's bundled FFmpeg decodes as fast as FFmpeg itself (no slower
    build, no Python cost per frame); the CLI's `-benchmark` reports its user CPU time."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    cpu, frames = time.process_time(), 0
    for packet in container.demux(stream):
        frames += len(packet.decode())
    pyav_ms = 1000 * (time.process_time() - cpu) / frames
    container.close()
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-threads", "1", "-benchmark", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    utime = re.search(r"bench: utime=([0-9.]+)s", done.stderr)
    if utime is None:
        raise RuntimeError(f"no -benchmark line from ffmpeg: {done.stderr[-300:]}")
    return pyav_ms, 1000 * float(utime.group(1)) / frames


def live_cpu_per_camera_s(
    path: Path, fps: float, decoder: str, seconds: float, transport: str, read_batch_s: float
) -> tuple[float, int | None]:
    """(CPU s per camera-second, frames decoded where counted) of a live stream: a child process
    plays the file in real time over `transport` and is not counted; one camera-second = one wall
    second, measured after a 3 s warm-up (the GOP is known by then). `read_batch_s`: PyAV's reads
    in bursts (camera/read_pacing.py; 0: each packet as it comes)."""
    settings = SamplerSettings()
    with played(path, transport) as url:
        spec = CameraSpec(camera_id=f"bench-live-{decoder}", url=url, fps=fps, decoder=decoder)
        source = open_source(spec, default_fps=fps, stall_timeout_s=10, live_read_batch_s=read_batch_s)
        frames: list[Frame] = []
        worker = CameraWorker(
            spec,
            source,
            FrameEncoder(settings.jpeg_quality, settings.max_frame_width),
            frames.append,
            Backoff(),
        )
        try:
            worker.start()
            time.sleep(3.0)
            stats = source.decode_stats
            decoded = None if stats is None else stats.decoded
            cpu, wall = time.process_time(), time.monotonic()
            time.sleep(seconds)
            used, elapsed = time.process_time() - cpu, time.monotonic() - wall
            stats = source.decode_stats
            if stats is not None and decoded is not None:
                decoded = stats.decoded - decoded
        finally:
            worker.stop()
    if not frames:
        raise RuntimeError(f"live {decoder}: no frame")
    return used / elapsed, decoded


def live_demux_cpu_per_camera_s(path: Path, seconds: float, transport: str) -> float:
    """CPU s per camera-second of PyAV only demuxing the same live stream (no packet decoded): what
    a live camera costs before any decoding, which a file read does not pay."""
    with played(path, transport) as url:
        options = {"rtsp_transport": "tcp"} if transport == "rtsp" else {}
        container = av.open(url, options=options, timeout=(10.0, 10.0))
        try:
            stream = container.streams.video[0]
            warm_up_until = time.monotonic() + 3.0
            cpu: float | None = None
            for _ in container.demux(stream):
                now = time.monotonic()
                if cpu is None and now >= warm_up_until:
                    cpu, wall = time.process_time(), now
                elif cpu is not None and now - wall >= seconds:
                    return (time.process_time() - cpu) / (now - wall)
        finally:
            container.close()
    raise RuntimeError("live demux: the stream ended")


TRANSPORTS = ("tcp_mpegts", "rtsp")
LIVE_ROWS = {
    "opencv": ("opencv", 0.0),
    "pyav_every_packet": ("pyav", 0.0),
    "pyav": ("pyav", SamplerSettings().live_read_batch_s),
}
"""Live rows: (decoder, read batch). `pyav` is the sampler as configured by default; its reads
in bursts are what `pyav_every_packet` lacks."""


@contextmanager
def played(path: Path, transport: str) -> Iterator[str]:
    """A child process (not counted) playing the file in real time, looped; yields the URL to read
    it from. `tcp_mpegts`: FFmpeg, MPEG-TS over tcp:// (stream copy); `rtsp`: the tests' H.264
    RTSP camera, which starts each session at the file's first key frame."""
    if transport == "rtsp":
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.fixtures.rtsp_h264", str(path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            yield child.stdout.readline().strip()
        finally:
            child.terminate()
            child.wait(10)
        return
    port = _free_port()
    child = subprocess.Popen(
        [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "fatal", "-re", "-stream_loop", "-1",
            "-i", str(path), "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1",
        ],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    p.add_argument("--live-seconds", type=float, default=10.0, help="per live run; 0: no live rows")
    p.add_argument("--live-repeat", type=int, default=3, help="live runs of each row (median)")
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
        floor_runs: list[float] = []
        every: list[tuple[float, float]] = []
        for _ in range(args.repeat):
            for decoder in runs:
                per_s, published[decoder], decoded[decoder] = cpu_per_camera_s(
                    media.path, media.seconds, args.fps, decoder
                )
                runs[decoder].append(per_s)
            per_s, floor_decoded = floor_cpu_per_camera_s(media.path, media.seconds, args.fps)
            floor_runs.append(per_s)
            every.append(every_frame_ms(media.path))
        encode_s = jpeg_cpu_s_per_frame(media.path)
        live: dict[str, dict[str, tuple[float, int | None]]] = {}
        demux_s: dict[str, float] = {}
        live_all: dict[str, dict[str, list[float]]] = {}
        live_s = args.live_seconds
        if live_s > 0:
            for transport in TRANSPORTS:
                live_runs: dict[str, list[tuple[float, int | None]]] = {label: [] for label in LIVE_ROWS}
                for _ in range(args.live_repeat):  # alternated, as the file rows
                    for label, (decoder, batch_s) in LIVE_ROWS.items():
                        live_runs[label].append(
                            live_cpu_per_camera_s(media.path, args.fps, decoder, live_s, transport, batch_s)
                        )
                live[transport] = {
                    label: (statistics.median(r[0] for r in rows), rows[-1][1])
                    for label, rows in live_runs.items()
                }
                live_all[transport] = {
                    label: [round(r[0], 4) for r in rows] for label, rows in live_runs.items()
                }
                demux_s[transport] = live_demux_cpu_per_camera_s(media.path, live_s, transport)
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
        "pyav_floor": {
            "what": "PyAV alone: each GOP from its key frame up to its last sample, samples to BGR",
            "cpu_s_per_camera_s": round(statistics.median(floor_runs), 4),
            "runs": [round(v, 4) for v in floor_runs],
            "cameras_per_core": round(1 / statistics.median(floor_runs), 1),
            "frames_decoded": floor_decoded,
        },
        "every_frame_cpu_ms_per_frame": {
            "pyav": round(statistics.median(e[0] for e in every), 3),
            "ffmpeg_cli": round(statistics.median(e[1] for e in every), 3),
        },
        "pyav_over_floor": round(median["pyav"] / statistics.median(floor_runs), 2),
        "opencv_over_pyav": round(median["opencv"] / median["pyav"], 1),
        "of_which_jpeg_encode_cpu_s_per_camera_s": round(encode_s * args.fps, 4),
        "live": {
            transport: {
                **{
                    decoder: {
                        "cpu_s_per_camera_s": round(per_s, 4),
                        "runs": live_all[transport][decoder],
                        "cameras_per_core": round(1 / per_s, 1),
                        "frames_decoded": n if n is not None else "all",
                        "wall_s": args.live_seconds,
                    }
                    for decoder, (per_s, n) in rows.items()
                },
                "demux_only_cpu_s_per_camera_s": round(demux_s[transport], 4),
            }
            for transport, rows in live.items()
        },
    }
    print(json.dumps(report, indent=2))
    print(
        f"CPU s per camera-second: opencv {median['opencv']:.4f}, pyav {median['pyav']:.4f}, "
        f"ratio {report['opencv_over_pyav']}x; "
        f"cameras/core {1 / median['opencv']:.1f} -> {1 / median['pyav']:.1f}; "
        f"PyAV alone (the floor) {statistics.median(floor_runs):.4f}, "
        f"the sampler {report['pyav_over_floor']}x it"
    )
    for transport, rows in live.items():
        print(
            f"live ({transport}) CPU s per camera-second: opencv {rows['opencv'][0]:.4f}, "
            f"pyav {rows['pyav'][0]:.4f} (each packet as it comes: {rows['pyav_every_packet'][0]:.4f}), "
            f"ratio {rows['opencv'][0] / rows['pyav'][0]:.1f}x; "
            f"demuxing alone {demux_s[transport]:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
