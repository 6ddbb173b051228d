"""Video files sampled by PyAV, decoding only what the samples need (issue 10).

OpenCV's `grab()` decodes every frame, so sampling 1 fps from a 25 fps H.264 file costs a full
decode. PyAV (FFmpeg's libraries) lets the sampler choose which packets reach the decoder:

- GOP no longer than the sampling interval: only key frames are decoded
  (`skip_frame = "NONKEY"`), and each sample time takes the key frame nearest to it, so about
  one frame is decoded per sample;
- GOP longer than the interval (a key frame every 4 s sampled at 1 fps): key frames alone would
  miss samples, so every packet is demuxed (cheap) but a GOP is decoded only from its key frame
  up to the last frame a sample takes from it (the first frame at or after each sample time, as
  `VideoFile` takes). The camera says so once in the log and in
  `facestream_camera_gop_over_interval`, with the GOP in `facestream_camera_gop_seconds`.
  Within such a GOP, an H.264 frame no other frame refers to (B-frames without a pyramid, the top
  layer of SVC-T cameras) is not decoded unless it is a sample itself (camera/h264_refs.py).

The choice is made per GOP, so a camera whose GOP changes is handled as it goes. A GOP is
buffered (packets only, undecoded) until the next key frame shows how long it is; one longer than
`MAX_GOP_PACKETS` is decoded as it comes instead, so memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, TypeAlias

import av
import av.container
import av.error
import av.packet
import av.video.frame
import av.video.stream
import numpy as np

from facestream.camera.h264_refs import droppable_for
from facestream.camera.live_schedule import LiveSchedule, gop_over
from facestream.camera.read_pacing import DEFAULT_READ_BATCH_S, read_in_bursts
from facestream.camera.sources import MAX_FRAME_PIXELS, Captured, Image, LiveStream, MediaFile
from facestream.camera.spec import CameraSpec
from facestream.camera.stream_clock import stream_times
from facestream.errors import CameraError

log = logging.getLogger(__name__)

MAX_GOP_PACKETS = 1500
"""Packets of one GOP held undecoded (60 s at 25 fps); a longer GOP is decoded as it streams."""
DEFAULT_STREAM_FPS = 25
"""A stream's frame rate where its header gives none."""


@dataclass(slots=True)
class DecodeStats:
    """What the decoder did, for tests, benchmarks and the sampler's metrics."""

    packets: int = 0
    """Video packets demuxed (= frames in the stream so far)."""
    decoded: int = 0
    """Packets sent to the decoder: the decode work done."""
    dropped: int = 0
    """Packets of non-reference frames in a GOP decoded up to a sample, left undecoded (no sample,
    and no other frame, needs them)."""
    gop_s: float | None = None
    """Seconds between the last two key frames seen."""
    gop_over_interval: bool = False
    """Whether that GOP is longer than the sampling interval (frames decoded on demand)."""
    undecodable: int = 0
    """Packets the decoder refused (corrupt data); their frames are not sampled."""
    reported: bool = False
    """Whether a GOP over the interval was logged (once per camera)."""
    waited_reads: int = 0
    """Reads of a live stream that waited for the network (camera/read_pacing.py)."""

    def note_waited_read(self) -> None:
        self.waited_reads += 1

    def note_gop(self, camera_id: str, gop_s: float, interval_s: float) -> None:
        """Record a GOP's length, and say once per camera when it is longer than the interval."""
        self.gop_s = round(gop_s, 3)
        self.gop_over_interval = gop_over(gop_s, interval_s)
        if self.gop_over_interval and not self.reported:
            self.reported = True
            log.warning(
                "camera %s: key frames every %.3g s, longer than its sampling interval of %.3g s: "
                "each GOP is decoded from its key frame up to its last sample, not key frames only "
                "(more CPU per camera; a GOP <= the interval avoids it)",
                camera_id,
                gop_s,
                interval_s,
            )


if TYPE_CHECKING:
    _Packet: TypeAlias = av.packet.Packet[av.video.stream.VideoStream]
    _Buffered: TypeAlias = tuple[float, _Packet]  # (media ms, packet)


def dropped_before_decoding(
    packet: _Packet, droppable: Callable[[bytes], bool] | None, stats: DecodeStats
) -> bool:
    """Whether `packet` (not a sample) holds a frame no other refers to, and is so left undecoded
    (counted in `stats.dropped`)."""
    if droppable is None or not droppable(bytes(packet)):
        return False
    stats.dropped += 1
    return True


def checked(
    container: av.container.InputContainer,
    max_pixels: int,
    error: Callable[[str], CameraError],
    opening: str,
) -> av.container.InputContainer:
    """`container`, if it has a video stream whose frames are within `max_pixels`; else it is
    closed and `error(...)` raised (`opening` names what failed: opening a file, connecting)."""
    if not container.streams.video:
        container.close()
        raise error(f"{opening}: no video stream")
    context = container.streams.video[0].codec_context
    if context.width * context.height > max_pixels:
        container.close()
        raise error(f"{context.width}x{context.height} frames are over the limit of {max_pixels:,} pixels")
    return container


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A live sample being decoded: its packet's timestamp (None: the stream has none)."""

    pts: int | None

    def found_in(self, frames: list[av.video.frame.VideoFrame]) -> av.video.frame.VideoFrame | None:
        """The sample among the frames the decoder let out (without timestamps: the newest)."""
        if self.pts is None:
            return frames[-1] if frames else None
        return next((frame for frame in frames if frame.pts == self.pts), None)


class PyAvVideoFile(MediaFile):
    """A video file read with PyAV; same sampling grid, capture times, resume, pacing and looping
    as `VideoFile` (camera/sources.py), except that a key frame may stand in for a sample time
    when key frames come at least once per sampling interval."""

    def __init__(
        self,
        spec: CameraSpec,
        fps: float,
        *,
        realtime: bool = False,
        loop: bool = False,
        max_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        super().__init__(spec, fps, realtime=realtime, loop=loop, max_pixels=max_pixels)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[tuple[float, av.video.frame.VideoFrame]] | None = None
        self.stats = DecodeStats()

    @property
    def decode_stats(self) -> DecodeStats:
        return self.stats

    def open(self) -> None:
        self._container = self._open_container()
        self._start_clock()
        self._next_ms = 0.0  # the next sample time, media ms
        self._taken_ms = -1.0  # media ms of the last frame taken (published or skipped on resume)
        self._frames = self._passes()

    def _open_container(self) -> av.container.InputContainer:
        try:
            container = av.open(self.spec.url, mode="r", timeout=10.0)
        except (av.error.FFmpegError, OSError):
            raise self._error("cannot open video") from None
        return checked(container, self.max_pixels, self._error, "cannot open video")

    def read(self) -> Captured | None:
        assert self._frames is not None, "open() first"
        if self._cancelled.is_set():
            return None
        try:
            media_ms, frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:  # the container itself: the worker reopens it
            raise self._error(f"cannot read video: {exc}") from None
        image = frame.to_ndarray(format="bgr24")
        if self._realtime and not self._sleep(self._opened_at + media_ms / 1000.0 - time.monotonic()):
            return None
        return Captured(np.asarray(image, np.uint8), self._epoch_ms + round(media_ms))

    def close(self) -> None:
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    # -- sampling ----------------------------------------------------------------------------

    def _passes(self) -> Iterator[tuple[float, av.video.frame.VideoFrame]]:
        """Every pass over the file (one, or endless with `loop`); media time runs on across passes."""
        offset_ms = 0.0
        while True:
            assert self._container is not None
            end_ms = yield from self._one_pass(self._container, offset_ms)
            if not self._loop or end_ms is None or self._cancelled.is_set():
                return
            offset_ms = end_ms
            self._container.close()
            self._container = self._open_container()

    def _one_pass(
        self, container: av.container.InputContainer, offset_ms: float
    ) -> Generator[tuple[float, av.video.frame.VideoFrame], None, float | None]:
        """Demux every packet, group them by GOP, sample each GOP; returns the pass's end (media ms)."""
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_count = 1  # one thread per camera already: more would only contend
        self._droppable = droppable_for(context.name, context.extradata)
        self._base = stream.time_base or Fraction(1, 90_000)
        self._start: int | None = stream.start_time
        self._offset_ms = offset_ms
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_STREAM_FPS
        gop: list[_Buffered] = []
        streaming = False  # decoding an overlong GOP as it comes
        last_ms: float | None = None
        for packet in container.demux(stream):
            if self._cancelled.is_set():
                return None
            if packet.pts is None or packet.size == 0:
                continue  # the demuxer's final empty packet
            if self._start is None:
                self._start = packet.pts
            ms = self._ms(packet.pts)
            self.stats.packets += 1
            last_ms = ms if last_ms is None else max(last_ms, ms)
            if packet.is_keyframe and gop:
                # before its frames: the metric is set when they are read
                self.stats.note_gop(self.spec.camera_id, (ms - gop[0][0]) / 1000.0, 1.0 / self.fps)
                if streaming:
                    yield from self._drain(context)
                    streaming = False
                else:
                    yield from self._sample_gop(context, gop, (ms, packet))
                gop = []
            if streaming:
                yield from self._decode_streaming(context, packet)
                continue
            gop.append((ms, packet))
            if len(gop) > MAX_GOP_PACKETS:
                context.skip_frame = "DEFAULT"
                for _, buffered in gop:
                    yield from self._decode_streaming(context, buffered)
                gop, streaming = [gop[0]], True  # gop[0] kept: where the GOP began, for its length
        if streaming:
            yield from self._drain(context)
        elif gop:
            yield from self._sample_gop(context, gop, None)
        return None if last_ms is None else last_ms + 1000.0 / float(rate)

    def _ms(self, pts: int) -> float:
        """Media time of a timestamp: from the stream's start, plus the passes before this one."""
        return self._offset_ms + float((pts - (self._start or 0)) * self._base) * 1000.0

    def _due(self, ms: float) -> bool:
        """Whether the frame at `ms` is taken as the next sample (VideoFile's grid rule)."""
        if ms <= self._taken_ms or ms + 1e-6 < self._next_ms:
            return False
        interval = 1000.0 / self.fps
        self._next_ms = (int(ms / interval + 1e-6) + 1) * interval
        self._taken_ms = ms
        return True

    def _wanted(self, ms: float) -> bool:
        """Not published before the file was reopened (`resume_after`)."""
        return self._after_ms is None or self._epoch_ms + round(ms) > self._after_ms

    def _sample_gop(
        self, context: av.VideoCodecContext, gop: list[_Buffered], next_key: _Buffered | None
    ) -> Iterator[tuple[float, av.video.frame.VideoFrame]]:
        """Take this GOP's samples: from key frames if it is short, else decoded on demand."""
        interval = 1000.0 / self.fps
        if next_key is not None and next_key[0] - gop[0][0] <= interval + 1e-3 and gop[0][1].is_keyframe:
            # At most one sample time falls in a GOP this short: the nearer key frame stands in.
            while self._next_ms < next_key[0] - 1e-6:
                sample_ms = self._next_ms
                candidates = [k for k in (gop[0], next_key) if k[0] > self._taken_ms]
                if not candidates:
                    break
                chosen = min(candidates, key=lambda k: abs(k[0] - sample_ms))
                self._taken_ms = chosen[0]
                # one frame per interval, whether the key frame came before or after its sample time
                grid_after = (int(chosen[0] / interval + 1e-6) + 1) * interval
                self._next_ms = max(grid_after, sample_ms + interval)
                if self._wanted(chosen[0]):
                    yield from self._decode(context, [chosen], {chosen[0]}, keyframes_only=True)
            return
        picks = {ms for ms in sorted(ms for ms, _ in gop) if self._due(ms) and self._wanted(ms)}
        if picks:
            yield from self._decode(context, gop, picks, keyframes_only=False)

    def _decode(
        self,
        context: av.VideoCodecContext,
        packets: list[_Buffered],
        picks: set[float],
        *,
        keyframes_only: bool,
    ) -> list[tuple[float, av.video.frame.VideoFrame]]:
        """Decode `packets` in order until every pick is out, then reset the decoder (drained or not:
        the next GOP starts from its own key frame). A pick that never decodes is skipped."""
        context.skip_frame = "NONKEY" if keyframes_only else "DEFAULT"
        got: dict[float, av.video.frame.VideoFrame] = {}

        def keep(packet: _Packet | None) -> None:
            for frame in self._decoded(context, packet):
                if frame.pts is not None and (ms := self._ms(frame.pts)) in picks:
                    got[ms] = frame

        for ms, packet in packets:
            if not keyframes_only and ms not in picks and self._dropped(packet):
                continue
            self.stats.decoded += 1
            keep(packet)
            if len(got) == len(picks):
                break
        else:
            keep(None)
        context.flush_buffers()
        return sorted(got.items(), key=lambda item: item[0])

    def _dropped(self, packet: _Packet) -> bool:
        return dropped_before_decoding(packet, self._droppable, self.stats)

    def _decode_streaming(
        self, context: av.VideoCodecContext, packet: _Packet
    ) -> Iterator[tuple[float, av.video.frame.VideoFrame]]:
        """An overlong GOP: decode every packet, take frames as they come out (in media order)."""
        self.stats.decoded += 1
        for frame in self._decoded(context, packet):
            yield from self._take(frame)

    def _decoded(
        self, context: av.VideoCodecContext, packet: _Packet | None
    ) -> list[av.video.frame.VideoFrame]:
        """The frames a packet (None: the end) lets out; a packet that does not decode is counted and
        skipped, as OpenCV's FFmpeg backend does, rather than failing the camera."""
        try:
            return context.decode(packet)
        except av.error.InvalidDataError:
            self.stats.undecodable += 1
            return []

    def _drain(self, context: av.VideoCodecContext) -> Iterator[tuple[float, av.video.frame.VideoFrame]]:
        for frame in self._decoded(context, None):
            yield from self._take(frame)
        context.flush_buffers()

    def _take(self, frame: av.video.frame.VideoFrame) -> Iterator[tuple[float, av.video.frame.VideoFrame]]:
        if frame.pts is not None and self._due(ms := self._ms(frame.pts)) and self._wanted(ms):
            yield ms, frame


class PyAvLiveStream(LiveStream):
    """A network stream (RTSP, UDP, TCP, RTMP, SRT) read by PyAV, decoding only its samples.

    As `LiveStream`, a grab thread hands the newest frame to the sampler, which takes it at its
    tick under its arrival time; but the grab thread hands over samples only, chosen on the
    stream's clock by `LiveSchedule` (camera/live_schedule.py): key frames alone while the GOP
    fits the sampling interval, and with a longer GOP each GOP decoded from its key frame up to
    its last sample. None is colour-converted until the sampler takes it. A GOP over the interval
    is logged once per camera and shown in the GOP metrics. Packets are read in bursts, one
    wake-up per `read_batch_s` once the reader has caught up (camera/read_pacing.py).
    """

    def __init__(
        self,
        spec: CameraSpec,
        fps: float,
        *,
        stall_timeout_s: float = 10.0,
        max_pixels: int = MAX_FRAME_PIXELS,
        read_batch_s: float = DEFAULT_READ_BATCH_S,
    ) -> None:
        super().__init__(spec, fps, stall_timeout_s=stall_timeout_s, max_pixels=max_pixels)
        self.stats = DecodeStats()
        self._read_batch_s = read_batch_s

    @property
    def transport(self) -> str:
        return "pyav"

    @property
    def decode_stats(self) -> DecodeStats:
        return self.stats

    def open(self) -> None:
        self.close()
        self._stop = threading.Event()
        self._latest, self._taken, self._failure = None, 0, None
        container = self._open_pyav()
        self._next_tick = time.monotonic()
        self._thread = threading.Thread(
            target=self._demux_loop, args=(self._stop, container), name=f"grab-{self.spec.camera_id}"
        )
        self._thread.daemon = True
        self._thread.start()

    def _open_pyav(self) -> av.container.InputContainer:
        options = (
            {"rtsp_transport": "tcp"} if self.spec.url.lower().startswith(("rtsp://", "rtsps://")) else {}
        )
        try:
            container = av.open(
                self.spec.url,
                mode="r",
                options=options,
                timeout=(self._stall_timeout_s, self._stall_timeout_s),
            )
        except (av.error.FFmpegError, OSError):
            raise self._error("cannot connect") from None  # FFmpeg's text may echo the URL
        return checked(container, self.max_pixels, self._error, "cannot connect")

    def _demux_loop(self, stop: threading.Event, container: av.container.InputContainer) -> None:
        """Owns the connection: demuxes until stopped or failed, then closes it.

        Each GOP's packets wait undecoded in `chain` until the schedule makes one a sample; then
        the chain is decoded up to it (the decoder keeps its place for the GOP's next sample), and
        what comes after a GOP's last sample is never decoded. A key frame resets the decoder if it
        decoded more than key frames since the last (a reset costs about a key frame's decode)."""
        stream = container.streams.video[0]
        context = stream.codec_context
        context.thread_count = 1
        droppable = droppable_for(context.name, context.extradata)
        schedule = LiveSchedule(1.0 / self.fps)
        chain: list[_Packet] = []
        wanted: _Wanted | None = None  # a sample the decoder has not let out yet (B-frames)
        keyed = False  # no frame decodes before the stream's first key frame
        mid_gop = False  # the decoder has decoded frames between key frames since its last reset
        sequence = 0
        frame_s = 1.0 / float(stream.average_rate or stream.guessed_rate or DEFAULT_STREAM_FPS)
        packets = read_in_bursts(
            container.demux(stream), self._read_batch_s, stop, self.stats.note_waited_read
        )
        try:
            for packet, at_s in stream_times(packets, stream.time_base, frame_s):
                if stop.is_set():
                    break
                if packet.size == 0:
                    continue
                self.stats.packets += 1
                if schedule.keys_suffice and not packet.is_keyframe:
                    continue  # never a sample; not even kept (holding MPEG-TS packets costs CPU)
                if packet.is_keyframe:
                    keyed = True
                    if mid_gop:
                        context.flush_buffers()
                        mid_gop = False
                    chain, wanted = [], None
                    sample = schedule.key_frame(at_s)
                    if schedule.gop_s is not None:
                        self.stats.note_gop(self.spec.camera_id, schedule.gop_s, schedule.interval_s)
                elif not keyed:
                    continue
                else:
                    sample = schedule.frame(at_s)
                chain.append(packet)
                if sample:
                    wanted = _Wanted(packet.pts)
                elif wanted is None:
                    if len(chain) > MAX_GOP_PACKETS:  # a GOP too long to hold: decode it as it comes
                        self._decode_chain(context, chain, droppable, None)
                        chain, mid_gop = [], True
                    continue
                mid_gop = mid_gop or len(chain) > 1 or not chain[0].is_keyframe
                frame = wanted.found_in(self._decode_chain(context, chain, droppable, wanted))
                chain = []
                if frame is None:
                    continue  # still in the decoder: the next packets let it out
                wanted = None
                sequence += 1
                if not self._hand_over(stop, sequence, frame):
                    return
            if not stop.is_set():
                raise CameraError("stream ended")
        except (CameraError, av.error.FFmpegError) as exc:
            detail = str(exc) if isinstance(exc, CameraError) else "stream ended or read failed"
            self._hand_over_failure(stop, detail)
        finally:
            container.close()

    def _decode_chain(
        self,
        context: av.VideoCodecContext,
        chain: list[_Packet],
        droppable: Callable[[bytes], bool] | None,
        wanted: _Wanted | None,
    ) -> list[av.video.frame.VideoFrame]:
        """Every frame the decoder lets out for `chain`, leaving undecoded the non-reference frames
        other than `wanted`'s (all of them kept when the stream has no timestamps to tell which is
        wanted); a packet that does not decode is counted and skipped, as OpenCV's FFmpeg backend
        does, rather than failing the camera."""
        frames: list[av.video.frame.VideoFrame] = []
        for packet in chain:
            not_wanted = wanted is None or (wanted.pts is not None and packet.pts != wanted.pts)
            if not_wanted and dropped_before_decoding(packet, droppable, self.stats):
                continue
            self.stats.decoded += 1
            try:
                frames.extend(context.decode(packet))
            except av.error.InvalidDataError:
                self.stats.undecodable += 1
        return frames

    def _decoded(self, frame: object) -> Image | None:
        if isinstance(frame, av.video.frame.VideoFrame):
            return np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
        return super()._decoded(frame)
