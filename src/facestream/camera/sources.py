"""Reading cameras: video files, still images, snapshot folders and live streams.

Every source does its own sampling, because what "the next frame" means differs:
- a video file is sampled by media time (frames at 0, 1/fps, 2/fps ... seconds of video),
  as fast as it decodes unless paced in real time; read by PyAV (camera/pyav.py), which decodes
  only key frames when they come at least once per sampling interval, or by OpenCV
  (`decoder: opencv`), which decodes every frame and converts only the sampled ones;
- a live stream (rtsp://, http(s):// ...) is read continuously by a grab thread that keeps
  only the newest frame, so a slow consumer never works through a backlog of stale
  frames; the sampler takes that newest frame at each fps tick. MJPEG over HTTP is read
  by facestream's own reader (camera/mjpeg.py), other HTTP streams by OpenCV's FFmpeg, and
  RTSP/UDP/TCP/RTMP/SRT by PyAV unless `decoder: opencv`, whose grab thread decodes and hands
  over only the samples (key frames only when the GOP fits the interval, camera/live_schedule.py);
- a snapshot folder (a camera that drops JPEGs into a directory) yields its newest image;
- a still image yields itself once; opening it reads only its header, so a still too large
  to decode is refused before any pixel is allocated, and holding many stills open costs
  nothing until each is read.

Every source refuses frames over `max_pixels` (default MAX_FRAME_PIXELS) undecoded where the
format allows it (stills, MJPEG, snapshots) and at open where only the container says the size
(video files and FFmpeg streams), so one hostile input cannot take the process's memory.

`cancel()` (from another thread) makes a blocked `read()` return None promptly, so
stopping a camera never waits out a stall timeout.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from facestream.camera.mjpeg import MjpegReader, open_mjpeg
from facestream.camera.read_pacing import DEFAULT_READ_BATCH_S
from facestream.camera.spec import IMAGE_SUFFIXES, CameraSpec, secrets_of
from facestream.errors import CameraError, InvalidMessage
from facestream.imaging import decode_image, decode_jpeg, image_dimensions

if TYPE_CHECKING:
    from facestream.camera.pyav import DecodeStats

Image = npt.NDArray[np.uint8]
MAX_FRAME_PIXELS = 40_000_000
"""A frame or still claiming more pixels than this is refused undecoded (a decompression bomb)."""


@dataclass(frozen=True, slots=True)
class Captured:
    image: Image
    captured_at_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


class FrameSource(ABC):
    """A camera opened for sampling at `fps`."""

    live: bool = False

    @property
    def resumable(self) -> bool:
        """Whether `resume_after` means anything here: the source plays the same frames, under the
        same capture times, every time it is opened (a file with a fixed start, a still)."""
        return False

    def __init__(self, spec: CameraSpec, fps: float, *, max_pixels: int = MAX_FRAME_PIXELS) -> None:
        self.spec = spec
        self.fps = fps
        self.max_pixels = max_pixels
        self._cancelled = threading.Event()

    @abstractmethod
    def open(self) -> None:
        """Connect; raise CameraError if the camera cannot be opened."""

    @abstractmethod
    def read(self) -> Captured | None:
        """The next sampled frame; None once a finite source has ended, or after `cancel()`.

        Raises CameraError when a live source fails or stalls, so the caller reconnects.
        """

    def close(self) -> None:
        return None

    @property
    def decode_stats(self) -> DecodeStats | None:
        """What the decoder did, where the source counts it (PyAV files); None elsewhere."""
        return None

    def resume_after(self, captured_at_ms: int) -> None:
        """From the next `open()` on, yield only frames captured after `captured_at_ms` (the last one
        already published), where the source can tell: a file played again from its start would
        publish every frame again. Live sources have nothing to replay and ignore it."""
        return None

    def cancel(self) -> None:
        """Stop for good: a read in progress or to come returns None instead of waiting."""
        self._cancelled.set()

    def _sleep(self, seconds: float) -> bool:
        """Wait; False if cancelled meanwhile."""
        return not self._cancelled.wait(max(0.0, seconds))

    def _error(self, detail: str) -> CameraError:
        """A CameraError naming the source, with any credential scrubbed from the detail."""
        for secret in secrets_of(self.spec.url):
            detail = detail.replace(secret, "***")
        return CameraError(f"{self.spec.redacted_url}: {detail}")

    def _check_video_size(self, capture: cv2.VideoCapture) -> None:
        """Refuse a video whose container claims frames over `max_pixels`, before any is decoded.

        Codecs such as PNG or MJPEG in a MOV/AVI have no practical size limit, and FFmpeg
        allocates every frame in full. A size the container does not report (0) is let through.
        """
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > self.max_pixels:
            capture.release()
            raise self._error(f"{width}x{height} frames are over the limit of {self.max_pixels:,} pixels")


class StillImage(FrameSource):
    """An image file, yielded once with its modification time.

    `open()` reads only the header (and refuses what is unreadable or over `max_pixels`);
    `read()` decodes, and the source keeps no pixels afterwards, so any number of stills can
    wait their turn in a run without memory growing with their count or size.
    """

    def open(self) -> None:
        path = Path(self.spec.url)
        with self._mapped(path) as data:
            try:
                width, height = image_dimensions(data)
            except InvalidMessage as exc:
                raise self._error(f"not a readable image: {exc.detail}") from None
        if width * height > self.max_pixels:
            raise self._error(
                f"{width}x{height} is over the limit of {self.max_pixels:,} pixels; refused undecoded"
            )
        self._at = int(path.stat().st_mtime * 1000)
        self._done = False

    _after_ms: int | None = None

    @property
    def resumable(self) -> bool:
        return True

    def resume_after(self, captured_at_ms: int) -> None:
        self._after_ms = captured_at_ms

    def read(self) -> Captured | None:
        if self._done or self._cancelled.is_set():
            return None
        self._done = True
        if self._after_ms is not None and self._at <= self._after_ms:
            return None  # published already
        with self._mapped(Path(self.spec.url)) as data:
            try:
                image = decode_image(data, max_pixels=self.max_pixels)
            except InvalidMessage as exc:
                raise self._error(exc.detail) from None
        return Captured(image, self._at)

    def _mapped(self, path: Path) -> mmap.mmap:
        """The file mapped read-only: the header check touches a page or two, not the whole file."""
        try:
            if not path.is_file():
                raise self._error("not a readable image: not a regular file")
            with path.open("rb") as f:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise self._error("not a readable image: empty file") from None
        except OSError as exc:
            raise self._error(f"cannot read: {exc.strerror}") from None


class MediaFile(FrameSource):
    """What every video-file reader shares (OpenCV's `VideoFile`, PyAV's `PyAvVideoFile`): the
    options, resuming after a capture time, and the clock that maps media time to capture time."""

    def __init__(
        self,
        spec: CameraSpec,
        fps: float,
        *,
        realtime: bool = False,
        loop: bool = False,
        max_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(spec, fps, max_pixels=max_pixels)
        self._realtime = realtime
        self._loop = loop
        self._after_ms: int | None = None

    @property
    def resumable(self) -> bool:
        return self.spec.start_at_ms is not None and not self._loop

    def resume_after(self, captured_at_ms: int) -> None:
        if self.resumable:
            self._after_ms = captured_at_ms

    def _start_clock(self) -> None:
        """Media time 0 is `start_at_ms` (or now); paced from where it resumes, the first frame
        after it comes one interval from now."""
        self._epoch_ms = self.spec.start_at_ms if self.spec.start_at_ms is not None else now_ms()
        skipped_s = max(0, self._after_ms - self._epoch_ms) / 1000.0 if self._after_ms is not None else 0.0
        self._opened_at = time.monotonic() - skipped_s


class VideoFile(MediaFile):
    """Sampled by media time on a fixed grid; paced to real time only when `realtime` is set.

    The k-th sample is the first frame at or after k/fps seconds of media, so the achieved
    rate is `fps` (or the file's own rate, if lower) whatever the ratio of the two. With
    `loop`, media time keeps running across restarts, and so do the capture times.

    `resume_after` skips, on the same grid, the samples captured at or before a given time: with
    a fixed `start_at_ms` a sample's capture time names its media position, so a file reopened
    goes on where it was (frames before are grabbed, never retrieved). Without one (media time 0
    is when the file is opened) or with `loop`, capture times change on every open and the file
    plays from its start.
    """

    _capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        self._capture = self._open_capture()
        self._start_clock()
        self._native_fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
        self._index = 0  # frames grabbed since the start of the current pass
        self._pass_offset_ms = 0.0  # media time of the current pass's first frame
        self._next_sample_ms = 0.0

    def _open_capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.spec.url, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise self._error("cannot open video")
        self._check_video_size(capture)
        return capture

    def read(self) -> Captured | None:
        assert self._capture is not None, "open() first"
        interval = 1000.0 / self.fps
        while not self._cancelled.is_set():
            if not self._capture.grab():
                if self._loop and self._index > 0:
                    self._capture.release()
                    self._capture = self._open_capture()
                    self._pass_offset_ms += self._index * 1000.0 / self._native_fps
                    self._index = 0
                    continue
                return None
            media_ms = self._pass_offset_ms + self._index * 1000.0 / self._native_fps
            self._index += 1
            if media_ms + 1e-6 < self._next_sample_ms:
                continue  # grabbed, never retrieved: no colour conversion for skipped frames
            self._next_sample_ms = (int(media_ms / interval + 1e-6) + 1) * interval
            if self._after_ms is not None and self._epoch_ms + round(media_ms) <= self._after_ms:
                continue  # sampled and published before the file was reopened
            ok, image = self._capture.retrieve()
            if not ok or image is None:
                raise self._error(f"frame {self._index} does not decode")
            if self._realtime and not self._sleep(self._opened_at + media_ms / 1000.0 - time.monotonic()):
                return None
            return Captured(np.asarray(image, np.uint8), self._epoch_ms + round(media_ms))
        return None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class LiveStream(FrameSource):
    """A live camera read by a grab thread that keeps only the newest frame.

    http(s) URLs that serve MJPEG are read by facestream's MJPEG reader, which keeps JPEG
    bytes and decodes only the frames the sampler takes; anything else (RTSP, other HTTP
    streams) goes through FFmpeg, which decodes every frame as video codecs require.
    """

    live = True

    def __init__(
        self,
        spec: CameraSpec,
        fps: float,
        *,
        stall_timeout_s: float = 10.0,
        max_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(spec, fps, max_pixels=max_pixels)
        self._stall_timeout_s = stall_timeout_s
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        """Notified when a frame or a failure is handed over, or on cancel: read() waits on it."""
        # (sequence, captured_at_ms, frame): a frame is pixels, JPEG bytes, or what a subclass decodes
        self._latest: tuple[int, int, object] | None = None
        self._taken = 0
        self._failure: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._mjpeg: MjpegReader | None = None
        self.undecodable = 0
        """Frames the camera sent that did not decode (garbage, truncated); skipped."""

    @property
    def transport(self) -> str:
        """'mjpeg' or 'ffmpeg': which reader the last open() chose."""
        return "mjpeg" if self._mjpeg is not None else "ffmpeg"

    def open(self) -> None:
        self.close()
        self._stop = threading.Event()
        self._latest, self._taken, self._failure = None, 0, None
        self._mjpeg = None
        capture: cv2.VideoCapture | None = None
        if self.spec.url.lower().startswith(("http://", "https://")):
            try:
                self._mjpeg = open_mjpeg(self.spec.url, self._stall_timeout_s)
            except CameraError as exc:
                raise self._error(str(exc)) from None
        if self._mjpeg is None:
            capture = self._open_ffmpeg()
        self._next_tick = time.monotonic()
        self._thread = threading.Thread(
            target=self._grab_loop,
            args=(self._stop, self._mjpeg, capture),
            name=f"grab-{self.spec.camera_id}",
        )
        self._thread.daemon = True
        self._thread.start()

    def _open_ffmpeg(self) -> cv2.VideoCapture:
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        timeout_ms = int(self._stall_timeout_s * 1000)
        capture = cv2.VideoCapture(
            self.spec.url,
            cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
        )
        if not capture.isOpened():
            capture.release()
            raise self._error("cannot connect")
        self._check_video_size(capture)
        return capture

    def _grab_loop(
        self, stop: threading.Event, mjpeg: MjpegReader | None, capture: cv2.VideoCapture | None
    ) -> None:
        """Owns the connection: reads until stopped or failed, then releases it."""
        sequence = 0
        try:
            while not stop.is_set():
                frame: Image | bytes
                if mjpeg is not None:
                    frame = mjpeg.next_part()
                else:
                    assert capture is not None
                    ok, image = capture.read()
                    if not ok or image is None:
                        raise CameraError("stream ended or read failed")
                    frame = np.asarray(image, np.uint8)
                sequence += 1
                if not self._hand_over(stop, sequence, frame):
                    break
        except CameraError as exc:
            self._hand_over_failure(stop, str(exc))
        finally:
            if mjpeg is not None:
                mjpeg.close()
            if capture is not None:
                capture.release()

    def _hand_over(self, stop: threading.Event, sequence: int, frame: object) -> bool:
        """Make `frame` the newest (grab thread); False if the stream was closed meanwhile: a newer
        connection may own `_latest` now."""
        with self._lock:
            if stop.is_set():
                return False
            self._latest = (sequence, now_ms(), frame)
            self._fresh.notify_all()
            return True

    def _hand_over_failure(self, stop: threading.Event, detail: str) -> None:
        """Tell read() the connection failed (grab thread), unless it was closed on purpose."""
        with self._lock:
            if not stop.is_set():
                self._failure = detail
                self._fresh.notify_all()

    def cancel(self) -> None:
        super().cancel()
        with self._lock:
            self._fresh.notify_all()

    def read(self) -> Captured | None:
        self._next_tick += 1.0 / self.fps
        behind = time.monotonic() - self._next_tick
        if behind > 0:
            self._next_tick = time.monotonic()  # fell behind: never try to catch up
        elif not self._sleep(-behind):
            return None
        # PyAV's grab thread hands over samples only, on the stream's clock: up to 1.5 intervals apart
        deadline = time.monotonic() + self._stall_timeout_s + 1.5 / self.fps
        while not self._cancelled.is_set():
            with self._lock:
                latest, failure = self._latest, self._failure
            if latest is not None and latest[0] > self._taken:
                self._taken = latest[0]
                image = self._decoded(latest[2])
                if image is not None:
                    return Captured(image, latest[1])
            elif failure is not None:
                raise self._error(failure)
            if time.monotonic() > deadline:
                bad = f" ({self.undecodable} undecodable so far)" if self.undecodable else ""
                raise self._error(f"no new frame for {self._stall_timeout_s:g}s{bad}")
            with self._lock:  # woken by the next hand-over; checked under the lock, so none is missed
                if self._latest is latest and self._failure is None and not self._cancelled.is_set():
                    self._fresh.wait(max(0.0, deadline - time.monotonic()))
        return None

    def _decoded(self, frame: object) -> Image | None:
        if not isinstance(frame, bytes):
            return frame  # type: ignore[return-value]  # pixels from the FFmpeg grab thread
        try:
            return decode_jpeg(frame, max_pixels=self.max_pixels)
        except InvalidMessage:
            self.undecodable += 1
            return None

    def close(self) -> None:
        self._stop.set()
        if self._mjpeg is not None:
            self._mjpeg.interrupt()  # the grab thread's socket read fails at once; it closes
        if self._thread is not None:
            # FFmpeg cannot be interrupted: its read returns within the stall timeout, and
            # the grab thread releases the capture itself, so nothing is freed under it
            self._thread.join(timeout=self._stall_timeout_s + 1.0)
            self._thread = None


class SnapshotFolder(FrameSource):
    """A camera that writes JPEG snapshots into a folder: each tick yields the newest new one.

    A snapshot is only taken once it is complete (a JPEG must end with its end-of-image
    marker), since cameras upload into the folder while it is being watched. What was
    already taken stays taken across reconnects.
    """

    live = True

    def __init__(
        self,
        spec: CameraSpec,
        fps: float,
        *,
        stall_timeout_s: float = 10.0,
        max_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(spec, fps, max_pixels=max_pixels)
        self._stall_timeout_s = stall_timeout_s
        self._last_mtime_ns = -1

    def resume_after(self, captured_at_ms: int) -> None:
        """A snapshot's capture time is its modification time, in ms: every snapshot of that
        millisecond or before was taken."""
        self._last_mtime_ns = max(self._last_mtime_ns, (captured_at_ms + 1) * 1_000_000 - 1)

    def open(self) -> None:
        self._dir = Path(self.spec.url)
        if not self._dir.is_dir():
            raise self._error("not a folder")
        self._next_tick = time.monotonic()

    def read(self) -> Captured | None:
        deadline = time.monotonic() + self._stall_timeout_s
        while True:
            self._next_tick = max(self._next_tick + 1.0 / self.fps, time.monotonic())
            if not self._sleep(self._next_tick - time.monotonic()):
                return None
            newest = self._newest()
            if newest is not None:
                mtime_ns, image = newest
                self._last_mtime_ns = mtime_ns
                return Captured(image, mtime_ns // 1_000_000)
            if time.monotonic() > deadline:
                raise self._error(f"no new snapshot for {self._stall_timeout_s:g}s")

    def _newest(self) -> tuple[int, Image] | None:
        """The newest complete image written after the last one taken, if any."""
        try:
            entries = [p for p in self._dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        except OSError as exc:
            raise self._error(f"cannot list folder: {exc.strerror}") from None
        stamped = []
        for path in entries:
            try:
                stamped.append((path.stat().st_mtime_ns, path))
            except OSError:
                continue  # removed between listing and stat
        for mtime_ns, path in sorted(stamped, reverse=True):
            if mtime_ns <= self._last_mtime_ns:
                return None
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if path.suffix.lower() in (".jpg", ".jpeg") and not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
                return None  # still being written: take it on a later tick
            try:
                return mtime_ns, decode_image(data, max_pixels=self.max_pixels)
            except InvalidMessage:
                continue  # unreadable, or too large to decode: the next older one
        return None


LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")


def open_source(
    spec: CameraSpec,
    *,
    default_fps: float,
    realtime_files: bool = False,
    loop_files: bool = False,
    stall_timeout_s: float = 10.0,
    max_pixels: int = MAX_FRAME_PIXELS,
    live_read_batch_s: float = DEFAULT_READ_BATCH_S,
) -> FrameSource:
    """The source type is decided by the URL: scheme, then what the path is. Nothing is opened.

    Video files and non-HTTP streams (RTSP, UDP ...) are read by PyAV (camera/pyav.py: it decodes
    only the frames sampling needs) unless the camera's `decoder` is "opencv"; http(s) streams stay
    with facestream's MJPEG reader or OpenCV's FFmpeg.
    """
    fps = spec.fps or default_fps
    url = spec.url
    if url.lower().startswith(LIVE_SCHEMES):
        if spec.decoder == "opencv" or url.lower().startswith(("http://", "https://")):
            return LiveStream(spec, fps, stall_timeout_s=stall_timeout_s, max_pixels=max_pixels)
        from facestream.camera.pyav import PyAvLiveStream  # imports this module

        return PyAvLiveStream(
            spec, fps, stall_timeout_s=stall_timeout_s, max_pixels=max_pixels, read_batch_s=live_read_batch_s
        )
    path = Path(url)
    if path.is_dir():
        return SnapshotFolder(spec, fps, stall_timeout_s=stall_timeout_s, max_pixels=max_pixels)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return StillImage(spec, fps, max_pixels=max_pixels)
    if spec.decoder == "opencv":
        return VideoFile(spec, fps, realtime=realtime_files, loop=loop_files, max_pixels=max_pixels)
    from facestream.camera.pyav import PyAvVideoFile  # imports this module

    return PyAvVideoFile(spec, fps, realtime=realtime_files, loop=loop_files, max_pixels=max_pixels)
