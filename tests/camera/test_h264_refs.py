"""Which H.264 packets hold a non-reference frame (camera/h264_refs.py), judged against FFmpeg's own
decoder: decoding with `skip_frame = "NONREF"` lets out exactly the reference frames, so a packet is
droppable exactly when its frame does not come out. Real libx264 files, as MP4 (length-prefixed NAL
units) and remuxed to MPEG-TS (Annex B start codes, as live streams arrive)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import pytest

from facestream.camera.h264_refs import (
    droppable_for,
    nal_headers_annex_b,
    nal_headers_length_prefixed,
    non_reference,
)
from tests.camera.h264 import make_h264

PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg")


@pytest.fixture(scope="module")
def with_b_frames(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "b2.mp4"
    return make_h264(
        [faces_dir / p for p in PHOTOS], out, size=(320, 240), seconds=4.0, gop_s=2.0, b_frames=2
    )


@pytest.fixture(scope="module")
def without_b_frames(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "b0.mp4"
    return make_h264([faces_dir / p for p in PHOTOS], out, size=(320, 240), seconds=4.0, gop_s=2.0)


def as_mpegts(path: Path) -> Path:
    out = path.with_suffix(".ts")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(path),
         "-c", "copy", "-f", "mpegts", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return out


def judged(path: Path) -> tuple[list[bool], list[bool]]:
    """(ours: droppable per packet, FFmpeg's: not let out under skip_frame NONREF), in packet order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        droppable = droppable_for(stream.codec_context.name, stream.codec_context.extradata)
        assert droppable is not None
        packets = [p for p in container.demux(stream) if p.size]
        ours = [droppable(bytes(p)) for p in packets]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        out = {frame.pts for frame in container.decode(stream)}
    return ours, [p.pts not in out for p in packets]


@pytest.mark.parametrize("container", ["mp4", "mpegts"])
def test_non_reference_frames_are_those_ffmpeg_skips_as_such(with_b_frames: Path, container: str) -> None:
    path = with_b_frames if container == "mp4" else as_mpegts(with_b_frames)
    ours, ffmpegs = judged(path)
    assert ours == ffmpegs
    assert 0.25 <= sum(ours) / len(ours) <= 0.5  # libx264's 2 B-frames in a pyramid: one is a reference


def test_a_stream_of_i_and_p_frames_has_nothing_to_drop(without_b_frames: Path) -> None:
    for path in (without_b_frames, as_mpegts(without_b_frames)):
        ours, ffmpegs = judged(path)
        assert not any(ours) and not any(ffmpegs)


def test_what_is_not_a_frame_of_h264_is_never_dropped() -> None:
    non_ref_slice = bytes([0x01, 0x9A, 0x00])  # nal_ref_idc 0, type 1
    ref_slice = bytes([0x41, 0x9A, 0x00])  # nal_ref_idc 2, type 1
    sei = bytes([0x06, 0x05, 0x00])
    annex_b = droppable_for("h264", None)
    assert annex_b is not None
    assert annex_b(b"\x00\x00\x00\x01" + sei + b"\x00\x00\x01" + non_ref_slice)
    assert not annex_b(b"\x00\x00\x01" + non_ref_slice + b"\x00\x00\x01" + ref_slice)  # one slice a reference
    assert not annex_b(b"\x00\x00\x01" + sei)  # no slice at all
    assert not annex_b(b"")
    assert not non_reference(iter([0x02]))  # a data partition: kept
    assert (
        nal_headers_length_prefixed(b"\x00\x00\x00\x09" + non_ref_slice, 4) is None
    )  # lengths do not add up
    assert list(nal_headers_annex_b(b"\x00\x00\x01")) == []
    assert droppable_for("hevc", None) is None  # HEVC's sub-layer non-reference frames may be referenced
