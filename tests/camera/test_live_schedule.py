"""The live sampling grid (camera/live_schedule.py): which frames of a live stream are samples,
and so how much of each GOP is decoded, for the GOPs cameras send."""

from __future__ import annotations

import itertools

import pytest

from facestream.camera.live_schedule import LiveSchedule

FPS = 25.0


def stream(
    seconds: float, gop_s: float, *, start_s: float = 0.0, jitter_s: float = 0.0
) -> list[tuple[float, bool]]:
    """(timestamp, key frame) of a 25 fps stream with a key frame every `gop_s` seconds."""
    gop = round(gop_s * FPS)
    return [
        (start_s + i / FPS + (jitter_s if i % 2 else -jitter_s), i % gop == 0)
        for i in range(round(seconds * FPS))
    ]


def sampled(frames: list[tuple[float, bool]], interval_s: float = 1.0) -> tuple[list[float], int]:
    """(sample times, frames decoded): a GOP is decoded from its key frame up to its last sample."""
    schedule = LiveSchedule(interval_s)
    samples: list[float] = []
    decoded = 0
    since_key = 0  # frames of this GOP so far
    undecoded = 0  # of which not decoded yet
    for at_s, key in frames:
        if key:
            since_key, undecoded = 0, 0
        since_key += 1
        undecoded += 1
        if schedule.key_frame(at_s) if key else schedule.frame(at_s):
            samples.append(at_s)
            decoded += undecoded
            undecoded = 0
    return samples, decoded


def gaps(samples: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(samples)]


def test_a_gop_of_the_interval_is_sampled_from_key_frames_only() -> None:
    samples, decoded = sampled(stream(30, 1.0))
    assert samples == pytest.approx([float(s) for s in range(30)])
    assert decoded == 30  # one frame a second


def test_a_2s_gop_decodes_up_to_its_second_sample_and_no_further() -> None:
    samples, decoded = sampled(stream(30, 2.0))
    assert samples == pytest.approx([float(s) for s in range(30)])  # every second, on the key frames' phase
    assert decoded == 15 * 26  # the key frame and the 25 frames up to the 1 s sample, of 50


def test_a_4s_gop_decodes_up_to_its_last_sample() -> None:
    samples, decoded = sampled(stream(32, 4.0))
    assert samples == pytest.approx([float(s) for s in range(32)])
    assert decoded == 8 * 76  # up to the 3 s sample, of 100


def test_a_gop_shorter_than_the_interval_takes_the_nearest_key_frames_at_the_sampled_rate() -> None:
    samples, decoded = sampled(stream(60, 0.6))
    assert decoded == len(samples)  # key frames only
    assert 57 <= len(samples) <= 61  # about one a second
    assert max(gaps(samples)) <= 1.2 + 1e-6


def test_jittered_timestamps_of_a_1s_gop_still_take_key_frames_only() -> None:
    frames = stream(30, 1.0, jitter_s=0.002)
    samples, decoded = sampled(frames)
    assert decoded == len(samples) == 30


def test_a_gop_a_frame_longer_than_the_interval_mostly_waits_for_its_key_frames() -> None:
    """26 frames (1.04 s) at 1 fps: a key frame less than half an interval after its grid point
    is taken rather than decoding 25 frames for the frame on it. The grid keeps its phase (1 fps),
    so once the key frames have drifted half an interval behind it, a frame between them is
    decoded, and the key frames after it are early for theirs."""
    frames = [(i / FPS, i % 26 == 0) for i in range(26 * 30)]
    samples, decoded = sampled(frames)
    keys = {at_s for at_s, key in frames if key}
    assert 30 <= len(samples) <= 31  # 1 fps over 31.2 s
    assert sum(s in keys for s in samples) >= 27
    assert decoded <= 3 * len(samples)  # not 26 a sample


def test_a_late_key_frame_of_a_long_gop_is_awaited_half_an_interval_at_most() -> None:
    """GOP 2 s, but the key frame due at 6 s comes at 6.8 s: the frame half an interval past the
    grid point is taken (its GOP decoded up to it), so no gap of 1.8 s."""
    frames = [(i / FPS, i % 50 == 0 and i < 150) for i in range(170)]  # 0 .. 6.76 s, key frames at 0, 2, 4
    frames += [(6.8 + i / FPS, i % 50 == 0) for i in range(100)]
    samples, decoded = sampled(frames)
    assert samples[:9] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.52, 6.8, 8.0])
    assert max(gaps(samples)) <= 1.52 + 1e-6
    # GOPs 0, 2, 4 up to their 1 s sample; then 5.04 .. 6.52; then 6.8 and 8.8 up to 8.0 and 10.0
    assert decoded == 26 * 3 + 38 + 31 + 31


def test_a_late_key_frame_of_a_gop_that_fits_leaves_a_gap() -> None:
    """GOP 1 s known: key frames alone are samples, so a key frame 0.8 s late is waited for
    (nothing between key frames was kept). It makes that GOP 1.8 s long, so the frame on the
    next grid point, 0.2 s later, is decoded from it; then key frames alone again."""
    frames = [(i / FPS, i % 25 == 0 and i < 100) for i in range(120)]
    frames += [(4.8 + i / FPS, i % 25 == 0) for i in range(100)]
    samples, decoded = sampled(frames)
    assert samples[:8] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.8, 5.0, 5.8, 6.8])
    assert decoded == len(samples) + 4  # 4.84 .. 4.96, for the sample at 5.0


def test_after_a_stall_the_grid_restarts_at_the_next_sample() -> None:
    frames = stream(5, 1.0) + stream(5, 1.0, start_s=12.0)  # seven seconds with no frames
    samples, decoded = sampled(frames)
    assert samples == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    assert decoded == 10


def test_a_clock_that_goes_back_restarts_the_grid_at_its_key_frame() -> None:
    frames = stream(5, 1.0, start_s=100.0) + stream(5, 1.0)  # e.g. the encoder restarted
    samples, decoded = sampled(frames)
    assert samples == pytest.approx([100.0, 101.0, 102.0, 103.0, 104.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    assert decoded == 10


def test_2_fps_from_a_1s_gop_decodes_half_of_each_gop() -> None:
    samples, decoded = sampled(stream(20, 1.0), interval_s=0.5)
    assert samples == pytest.approx([k / 2 for k in range(40)], abs=1 / FPS)  # the first frame at or after
    assert decoded == 20 * 14  # the key frame and the 13 up to the 0.52 s sample, of 25


def test_the_gop_is_known_after_two_key_frames() -> None:
    schedule = LiveSchedule(1.0)
    assert schedule.key_frame(10.0)
    assert schedule.gop_s is None and not schedule.gop_over_interval
    for i in range(1, 50):
        schedule.frame(10.0 + i / FPS)
    schedule.key_frame(12.0)
    assert schedule.gop_s == pytest.approx(2.0) and schedule.gop_over_interval
