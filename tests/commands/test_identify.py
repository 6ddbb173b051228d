"""The acceptance of `facestream identify`, through the real CLI in a real process.

With enroll/ enrolled (one identity per name prefix), every person of the shared photos who is
enrolled is found, nobody else is, and a camera video gives one candidate per person per
episode. The gallery is built once for the module (`facestream gallery enroll` per identity).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from facestream.settings import MatcherSettings, ModelSettings
from tests.camera.stills import flat_png
from tests.fixtures.media import (
    LOG_RECORD,
    RESOLUTIONS,
    RETURN_GAP_S,
    SCENE_PEOPLE,
    UNENROLLED,
    enrolled_identities,
    facestream_cli,
    grant_authorisation,
    non_log_lines,
)

pytestmark = pytest.mark.subprocess  # the real CLI in its own process

THRESHOLD = MatcherSettings().match_threshold
Candidates = list[dict[str, Any]]


def facestream(*args: str, model_dir: Path) -> subprocess.CompletedProcess[str]:
    return facestream_cli(*args, model_dir=model_dir)


def candidates(result: subprocess.CompletedProcess[str]) -> Candidates:
    """stdout parsed, checking that it holds nothing but candidate JSON lines."""
    out = []
    for line in result.stdout.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict)
        assert {"identity", "score", "source", "frame_ts", "bbox"} <= obj.keys(), obj
        assert THRESHOLD <= obj["score"] <= 1.0
        datetime.fromisoformat(obj["frame_ts"])
        x1, y1, x2, y2 = obj["bbox"]
        assert 0 <= x1 < x2 and 0 <= y1 < y2
        out.append(obj)
    return out


def of(found: Candidates, source: Path) -> list[str]:
    """Identities found in one source, left to right."""
    hits = [c for c in found if c["source"] == str(source)]
    return [c["identity"] for c in sorted(hits, key=lambda c: c["bbox"][0] + c["bbox"][2])]


@pytest.fixture(scope="module")
def models(model_settings: ModelSettings) -> Path:
    return model_settings.model_dir


@pytest.fixture(scope="module")
def gallery(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory, models: Path) -> str:
    directory = str(tmp_path_factory.mktemp("identify") / "gallery")
    auth = grant_authorisation(directory, model_dir=models)
    for identity, photos in enrolled_identities(faces_dir).items():
        result = facestream(
            "gallery", "enroll", "--gallery", directory, "--authorisation", auth, "--identity", identity,
            *map(str, photos), model_dir=models,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def stills_run(faces_dir: Path, gallery: str, models: Path) -> subprocess.CompletedProcess[str]:
    return facestream(
        "identify",
        "--gallery",
        gallery,
        str(faces_dir / "probe"),
        str(faces_dir / "scenes"),
        model_dir=models,
    )


@pytest.fixture(scope="module")
def stills(stills_run: subprocess.CompletedProcess[str]) -> Candidates:
    assert stills_run.returncode == 0, stills_run.stderr
    return candidates(stills_run)


def test_the_enrolled_identities(faces_dir: Path) -> None:
    assert sorted(enrolled_identities(faces_dir)) == ["alex_lacamoire", "biden", "obama", "rose_leslie"]


def test_stills_exit_0_with_only_json_on_stdout_and_no_errors(
    stills_run: subprocess.CompletedProcess[str], stills: Candidates
) -> None:
    assert stills_run.returncode == 0
    assert stills
    assert non_log_lines(stills_run.stderr) == []


def test_every_probe_photo_matches_its_identity(faces_dir: Path, stills: Candidates) -> None:
    probe = faces_dir / "probe"
    assert of(stills, probe / "alex_lacamoire.jpg") == ["alex_lacamoire"]
    assert of(stills, probe / "obama.jpg") == ["obama"]


def test_the_unenrolled_person_matches_nothing(faces_dir: Path, stills: Candidates) -> None:
    assert of(stills, faces_dir / "probe" / f"{UNENROLLED}_unenrolled.jpg") == []
    assert UNENROLLED not in {c["identity"] for c in stills}


def test_both_enrolled_faces_of_each_scene_are_found(faces_dir: Path, stills: Candidates) -> None:
    enrolled = set(enrolled_identities(faces_dir))
    scenes = faces_dir / "scenes"
    assert of(stills, scenes / "obama_and_biden.jpg") == ["biden", "obama"]  # not the person behind
    assert of(stills, scenes / "two_people.jpg") == ["obama", "biden"]
    assert of(stills, scenes / "kit_harington_and_rose_leslie.jpg") == ["rose_leslie"]
    for scene, people in SCENE_PEOPLE.items():
        assert of(stills, scenes / f"{scene}.jpg") == [p for p in people if p in enrolled]


def test_obama_is_found_at_every_resolution(faces_dir: Path, stills: Candidates) -> None:
    for res in RESOLUTIONS:
        assert of(stills, faces_dir / "scenes" / f"obama_{res}.jpg") == ["obama"], res


def test_nothing_else_is_reported(faces_dir: Path, stills: Candidates) -> None:
    photos = sorted([*(faces_dir / "probe").glob("*.jpg"), *(faces_dir / "scenes").glob("*.jpg")])
    assert sorted(c["source"] for c in stills) == sorted(str(p) for p in photos for _ in of(stills, p))
    assert len(stills) == 2 + 2 + 2 + 1 + len(RESOLUTIONS)


@pytest.fixture(scope="module")
def video_run(
    walk_past_video: Path, comes_back_video: Path, gallery: str, models: Path
) -> subprocess.CompletedProcess[str]:
    """Both videos at 5 fps (each person is in ~10 sampled frames), episodes ending after 1 s."""
    return facestream(
        "identify", "--gallery", gallery, "--fps", "5", "--episode-gap-s", "1",
        str(walk_past_video), str(comes_back_video), model_dir=models,
    )  # fmt: skip


def test_a_video_gives_one_candidate_per_person_per_episode(
    video_run: subprocess.CompletedProcess[str], walk_past_video: Path
) -> None:
    assert video_run.returncode == 0, video_run.stderr
    found = [c for c in candidates(video_run) if c["source"] == str(walk_past_video)]
    assert sorted(c["identity"] for c in found) == ["alex_lacamoire", "obama"]
    at = {c["identity"]: c["frame_ts_ms"] for c in found}
    # obama opens the video; alex appears after obama's and kit_harington's 2 s each
    assert at["alex_lacamoire"] - at["obama"] == pytest.approx(4000, abs=500)


def test_a_gap_longer_than_the_episode_gap_gives_a_second_candidate(
    video_run: subprocess.CompletedProcess[str], comes_back_video: Path
) -> None:
    found = [c for c in candidates(video_run) if c["source"] == str(comes_back_video)]
    assert [c["identity"] for c in found] == ["obama", "obama"]
    assert len({c["episode_id"] for c in found}) == 2
    assert found[1]["frame_ts_ms"] - found[0]["frame_ts_ms"] >= RETURN_GAP_S * 1000


def test_a_gap_shorter_than_the_episode_gap_keeps_one_candidate(
    comes_back_video: Path, gallery: str, models: Path
) -> None:
    result = facestream(
        "identify", "--gallery", gallery, "--fps", "5", "--episode-gap-s", str(RETURN_GAP_S + 5),
        str(comes_back_video), model_dir=models,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [c["identity"] for c in candidates(result)] == ["obama"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["identify"], "required: SOURCE"),
        (["identify", "--match-threshold", "high", "x.jpg"], "--match-threshold"),
        (["identify", "--episode-gap-s", "-1", "x.jpg"], "--episode-gap-s"),
        (["identify", "--detector-type", "yolo", "x.jpg"], "invalid choice"),
        (["identify", "--no-such-flag", "x.jpg"], "unrecognized arguments"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], says: str, models: Path) -> None:
    result = facestream(*args, model_dir=models)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = non_log_lines(result.stderr)
    assert line.startswith("facestream") and says in line


def test_a_missing_source_is_a_clear_error(gallery: str, tmp_path: Path, models: Path) -> None:
    missing = tmp_path / "no_such_camera.mp4"
    result = facestream("identify", "--gallery", gallery, str(missing), model_dir=models)
    assert result.returncode == 2
    assert result.stdout == ""
    assert non_log_lines(result.stderr) == [f"facestream: error: source {missing}: no such file or folder"]


def test_a_missing_gallery_is_a_clear_error(faces_dir: Path, tmp_path: Path, models: Path) -> None:
    result = facestream(
        "identify", "--gallery", str(tmp_path / "nobody"), str(faces_dir / "probe"), model_dir=models
    )
    assert result.returncode == 2
    (line,) = non_log_lines(result.stderr)
    assert "enroll someone first" in line


def test_a_broken_source_fails_alone_and_loses_nothing(
    faces_dir: Path, gallery: str, tmp_path: Path, models: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    obama = faces_dir / "probe" / "obama.jpg"
    result = facestream("identify", "--gallery", gallery, str(broken), str(obama), model_dir=models)
    assert result.returncode == 1
    assert of(candidates(result), obama) == ["obama"]
    assert str(broken) in result.stderr


# -- bounded memory for any input ----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    """The identify process's peak resident memory (or that of a child it waited for, if larger)."""


def measured(*args: str, model_dir: Path, out: Path, timeout_s: float = 300) -> Measured:
    """`facestream ARGS` in its own process, reaped with wait4 to read that process's own peak RSS.

    RUSAGE_CHILDREN would mix in every process this test session has run before; wait4 gives
    the usage of exactly this child.
    """
    script = Path(sys.executable).with_name("facestream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "facestream"]
    env = {**os.environ, "FACESTREAM_MODEL_DIR": str(model_dir), "FACESTREAM_MODEL_EXECUTION_PROVIDER": "cpu"}
    stdout, stderr = out / "stdout.txt", out / "stderr.txt"
    with stdout.open("w") as o, stderr.open("w") as e:
        process = subprocess.Popen([*command, *args], stdout=o, stderr=e, env=env)
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            os.wait4(process.pid, 0)
            process.returncode = -9
            pytest.fail(f"facestream {' '.join(args)} ran past {timeout_s}s")
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(process.returncode, stdout.read_text(), stderr.read_text(), usage.ru_maxrss / 1024)


def errors(stderr: str) -> list[str]:
    """The messages of the ERROR records identify logged."""
    return [
        LOG_RECORD.sub("", line) for line in stderr.splitlines() if " ERROR facestream.identify: " in line
    ]


def test_stills_over_the_pixel_limit_are_refused_undecoded_in_bounded_memory(
    faces_dir: Path, gallery: str, tmp_path: Path, models: Path
) -> None:
    """Three 30000x30000 PNGs (2.7 GB each decoded, 150 KB each on disk) beside a good photo."""
    huge = flat_png(30000, 30000)
    bombs = [tmp_path / f"bomb_{n}.png" for n in range(3)]
    for bomb in bombs:
        bomb.write_bytes(huge)
    obama = faces_dir / "probe" / "obama.jpg"
    run = measured(
        "identify", "--gallery", gallery, *map(str, bombs), str(obama), model_dir=models, out=tmp_path
    )
    assert run.returncode == 1
    assert errors(run.stderr) == [
        f"source {bomb}: 30000x30000 is over the limit of 40,000,000 pixels; refused undecoded"
        for bomb in bombs
    ]
    assert of(candidates(subprocess.CompletedProcess([], 1, run.stdout, "")), obama) == ["obama"]
    assert non_log_lines(run.stderr) == []
    assert run.peak_rss_mb < 1536, f"peak RSS {run.peak_rss_mb:.0f} MB"


def test_stills_go_through_one_at_a_time(gallery: str, tmp_path: Path, models: Path) -> None:
    """Twelve stills just under the limit (38.5 MP, 115 MB each decoded) peak no higher than one.

    All decoded up front they would hold 1.4 GB more. The bound is relative to a run over one
    still: the absolute peak depends on the machine (a CI runner measured 1.2 GB where this
    machine measures 0.53 GB for the same run), what grows with the number of stills does not.
    """
    one, twelve = tmp_path / "one", tmp_path / "twelve"
    still = flat_png(7000, 5500)
    for folder, count in ((one, 1), (twelve, 12)):
        folder.mkdir()
        for n in range(count):
            (folder / f"{n:02d}.png").write_bytes(still)
    runs = {
        folder.name: measured("identify", "--gallery", gallery, str(folder), model_dir=models, out=tmp_path)
        for folder in (one, twelve)
    }
    for run in runs.values():
        assert run.returncode == 0, run.stderr
        assert errors(run.stderr) == [] and non_log_lines(run.stderr) == []
        assert run.stdout == ""  # white pictures: nobody in them
    one_mb, twelve_mb = runs["one"].peak_rss_mb, runs["twelve"].peak_rss_mb
    # under two decoded stills of growth: the next still is decoded after the last is released
    assert twelve_mb - one_mb < 230, f"peak RSS {one_mb:.0f} MB for one still, {twelve_mb:.0f} MB for twelve"


def test_a_folder_without_images_is_one_line_and_exit_2(gallery: str, tmp_path: Path, models: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(1000):
        (folder / f"{n:04d}.txt").write_text("not a picture")
    result = facestream("identify", "--gallery", gallery, str(folder), model_dir=models)
    assert result.returncode == 2
    assert result.stdout == ""
    assert non_log_lines(result.stderr) == [
        f"facestream: error: source {folder}: no images in this folder (.bmp .jpeg .jpg .png .webp)"
    ]


def test_a_folder_of_unreadable_images_is_one_line_and_exit_1(
    gallery: str, tmp_path: Path, models: Path
) -> None:
    folder = tmp_path / "fakes"
    folder.mkdir()
    for n in range(1000):
        (folder / f"{n:04d}.jpg").write_text("not a JPEG at all")
    result = facestream("identify", "--gallery", gallery, str(folder), model_dir=models)
    assert result.returncode == 1
    assert result.stdout == ""
    assert errors(result.stderr) == [
        f"source {folder}: no usable image, all 1000 failed; the first: {folder / '0000.jpg'}: "
        "not a readable image: no JPEG, PNG, BMP or WebP header"
    ]
    assert non_log_lines(result.stderr) == []  # nor any noise from the image libraries


def test_good_stills_among_bad_ones_are_still_identified_and_the_bad_summarised(
    faces_dir: Path, gallery: str, tmp_path: Path, models: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(faces_dir / "probe" / "obama.jpg", folder / "obama.jpg")
    shutil.copy(faces_dir / "probe" / "alex_lacamoire.jpg", folder / "zz_alex_lacamoire.jpg")
    (folder / "a_huge.png").write_bytes(flat_png(30000, 30000))
    for n in range(20):
        (folder / f"bad_{n:02d}.jpg").write_bytes(b"\xff\xd8 cut short")
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    result = facestream("identify", "--gallery", gallery, str(folder), str(video), model_dir=models)
    assert result.returncode == 1
    found = candidates(result)
    assert of(found, folder / "obama.jpg") == ["obama"]
    assert of(found, folder / "zz_alex_lacamoire.jpg") == ["alex_lacamoire"]  # after every bad one
    bad = "not a readable image: no frame header found (truncated or corrupt JPEG)"
    too_large = "30000x30000 is over the limit of 40,000,000 pixels; refused undecoded"
    assert errors(result.stderr) == [
        f"source {folder / 'a_huge.png'}: {too_large}",
        *(f"source {folder / f'bad_{n:02d}.jpg'}: {bad}" for n in range(4)),
        f"source {folder}: 16 more of its 23 images failed",
        f"source {video}: cannot open video",
    ]
