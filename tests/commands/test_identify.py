"""The acceptance of `facestream identify`, through the real CLI in a real process.

With enroll/ enrolled (one identity per name prefix), every person of the shared photos who is
enrolled is found, nobody else is, and a camera video gives one candidate per person per
episode. The gallery is built once for the module (`facestream gallery enroll` per identity).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from facestream.accountability.audit import AuditLog
from facestream.messages import BBox
from facestream.settings import MatcherSettings, ModelSettings
from facestream.stages.tracks import iou
from facestream.vision.faces import FaceFinder
from tests.camera.stills import flat_png
from tests.commands.identify_output import noise, split_summary, stdout_objects, summary_lines
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
    read,
    real_faces,
)

pytestmark = pytest.mark.subprocess  # the real CLI in its own process

THRESHOLD = MatcherSettings().match_threshold
Candidates = list[dict[str, Any]]


def facestream(*args: str, model_dir: Path) -> subprocess.CompletedProcess[str]:
    return facestream_cli(*args, model_dir=model_dir)


def candidates(result: subprocess.CompletedProcess[str]) -> Candidates:
    """stdout parsed, checking that it holds nothing but candidate JSON lines (and the `--summary`
    object last, if asked for)."""
    out = []
    for obj in stdout_objects(result.stdout)[0]:
        assert {"identity", "score", "source", "frame_ts", "bbox", "media_offset_s"} <= obj.keys(), obj
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
        "--summary",
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
    assert noise(stills_run.stderr) == []


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


def test_an_episode_gap_not_above_the_track_refresh_is_warned_of(
    video_run: subprocess.CompletedProcess[str], stills_run: subprocess.CompletedProcess[str]
) -> None:
    """With tracks, a face in view is matched again only every --track-refresh-s (10 s): a gap of 1 s
    would make each of those matches a new candidate. The default gap (30 s) is above it."""
    warning = "--episode-gap-s 1 is not above --track-refresh-s 10"
    assert sum(warning in line for line in video_run.stderr.splitlines()) == 1
    assert "is not above --track-refresh-s" not in stills_run.stderr


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


def test_with_episode_ends_each_candidate_is_followed_by_its_end_when_the_face_has_gone(
    comes_back_video: Path, walk_past_video: Path, gallery: str, models: Path
) -> None:
    """The embedded mode's "face gone" lines: an episode ends once a frame of its camera comes more
    than the episode gap after its last hit (before the same person's next episode opens), or when
    its file ends; each end names its candidate and says when the face was first and last seen.
    Every sampled face is matched here (no tracks), so an episode's last hit is its face's last frame."""
    result = facestream(
        "identify", "--gallery", gallery, "--fps", "5", "--episode-gap-s", "1", "--episode-ends",
        "--no-track-faces", str(comes_back_video), str(walk_past_video), model_dir=models,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    objects, _ = stdout_objects(result.stdout)
    kinds = [
        f"end {o['episode_ended']['identity']}" if "episode_ended" in o else o["identity"] for o in objects
    ]
    assert kinds == ["obama", "end obama", "obama", "end obama", "obama", "end obama", "alex_lacamoire",
                     "end alex_lacamoire"]  # fmt: skip
    for opened, ended in zip(objects[::2], (o["episode_ended"] for o in objects[1::2]), strict=True):
        assert (ended["candidate_id"], ended["episode_id"]) == (opened["candidate_id"], opened["episode_id"])
        assert (ended["camera_id"], ended["zone"]) == (opened["camera_id"], opened["zone"])
        assert ended["first_seen_ms"] == opened["frame_ts_ms"]
        assert ended["first_seen_offset_s"] == opened["media_offset_s"]
        assert ended["best_score"] >= opened["score"]
    first, back, walk_obama, _ = (o["episode_ended"] for o in objects[1::2])
    # obama is in the first 1.5 s, gone for RETURN_GAP_S, back for 1.5 s, at 5 frames a second
    assert first["last_seen_offset_s"] == pytest.approx(1.4, abs=0.25)
    assert 5 <= first["hits"] <= 8
    assert back["first_seen_offset_s"] == pytest.approx(1.5 + RETURN_GAP_S, abs=0.25)
    assert back["last_seen_offset_s"] == pytest.approx(2 * 1.5 + RETURN_GAP_S - 0.2, abs=0.25)
    assert walk_obama["last_seen_offset_s"] == pytest.approx(1.8, abs=0.25)  # then kit_harington, 2 s


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
    assert noise(run.stderr) == []
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
        assert errors(run.stderr) == [] and noise(run.stderr) == []
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
    assert noise(result.stderr) == []  # nor any noise from the image libraries


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


# -- telling the user what happened (issue 14) ---------------------------------------------------


def test_the_summary_closes_stderr_with_one_line_per_source(
    faces_dir: Path, stills_run: subprocess.CompletedProcess[str], stills: Candidates
) -> None:
    probe, scenes = faces_dir / "probe", faces_dir / "scenes"
    head = split_summary(stills_run.stderr)[1][0]
    assert head == f"facestream identify: 2 sources, 10 frames, 14 faces, {len(stills)} candidates"
    lines = summary_lines(stills_run.stderr)
    assert list(lines) == [str(probe), str(scenes)]
    assert lines[str(probe)] == (
        f"{probe} (folder, 3 images): 3 faces; 2 candidates: alex_lacamoire (0.77), obama (0.83); "
        f"faces and no candidate in 1 image: {UNENROLLED}_unenrolled.jpg"
    ).replace("(0.77)", _score(stills, probe / "alex_lacamoire.jpg")).replace(
        "(0.83)", _score(stills, probe / "obama.jpg")
    )
    assert lines[str(scenes)].startswith(f"{scenes} (folder, 7 images): 11 faces; 9 candidates: ")
    assert lines[str(scenes)].endswith(" and 4 more")  # five shown
    assert "%|" not in stills_run.stderr  # no progress bar: stderr is not a terminal


def _score(found: Candidates, photo: Path) -> str:
    (c,) = [c for c in found if c["source"] == str(photo)]
    return f"({c['score']:.2f})"


def test_summary_json_is_the_last_line_of_stdout(
    faces_dir: Path, stills_run: subprocess.CompletedProcess[str], stills: Candidates
) -> None:
    found, summary = stdout_objects(stills_run.stdout)
    assert summary is not None and found == stills
    assert {k: summary[k] for k in ("sources", "frames", "faces", "candidates", "failed", "rejected")} == {
        "sources": 2, "frames": 10, "faces": 14, "candidates": len(stills), "failed": 0, "rejected": {},
    }  # fmt: skip
    probe, scenes = summary["per_source"]
    assert probe == {
        "source": str(faces_dir / "probe"),
        "kind": "folder",
        "images": 3,
        "frames": 3,
        "faces": 3,
        "rejected": {},
        "repeats": 0,
        "candidates": 2,
        "identities": {"alex_lacamoire": 1, "obama": 1},
        "faces_without_candidate": [f"{UNENROLLED}_unenrolled.jpg"],
        "failed": [],
    }
    assert scenes["frames"] == 7 and scenes["faces"] == sum(len(p) for p in SCENE_PEOPLE.values()) + 4
    assert scenes["identities"] == {"biden": 2, "obama": 2 + len(RESOLUTIONS), "rose_leslie": 1}
    assert scenes["faces_without_candidate"] == []  # every scene has someone enrolled


def test_without_summary_stdout_is_candidates_only(video_run: subprocess.CompletedProcess[str]) -> None:
    assert video_run.stdout and stdout_objects(video_run.stdout)[1] is None


def test_a_video_candidate_says_how_far_into_the_file_it_is(
    video_run: subprocess.CompletedProcess[str],
    walk_past_video: Path,
    comes_back_video: Path,
    stills: Candidates,
) -> None:
    found = candidates(video_run)
    walk = {c["identity"]: c["media_offset_s"] for c in found if c["source"] == str(walk_past_video)}
    assert walk["obama"] == pytest.approx(0.0, abs=0.25)  # the first person of the video
    assert walk["alex_lacamoire"] == pytest.approx(4.0, abs=0.5)  # after obama's and kit's 2 s each
    back = [c["media_offset_s"] for c in found if c["source"] == str(comes_back_video)]
    assert back[0] == pytest.approx(0.0, abs=0.25)
    assert back[1] >= 1.5 + RETURN_GAP_S - 0.25
    assert {c["media_offset_s"] for c in stills} == {None}  # a still has no position
    line = summary_lines(video_run.stderr)[str(walk_past_video)]
    assert re.fullmatch(
        rf"{re.escape(str(walk_past_video))} \(video, read to 0:05\.8\): 30 frames, 30 faces; 2 candidates: "
        r"obama \(0\.\d\d\) at 0:00\.0, alex_lacamoire \(0\.\d\d\) at 0:0[34]\.\d",
        line,
    ), line


def test_a_source_with_faces_and_no_candidate_says_so(
    faces_dir: Path, no_face_photo: Path, gallery: str, models: Path
) -> None:
    kit = faces_dir / "probe" / f"{UNENROLLED}_unenrolled.jpg"
    result = facestream("identify", "--gallery", gallery, str(kit), str(no_face_photo), model_dir=models)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert summary_lines(result.stderr) == {
        str(kit): f"{kit} (image): 1 face; no candidate",
        str(no_face_photo): f"{no_face_photo} (image): no face",
    }


def test_faces_rejected_by_a_quality_gate_are_counted_with_the_gate(
    faces_dir: Path, gallery: str, models: Path
) -> None:
    """A gate no face can pass (a 4000 px minimum): obama is seen, rejected as too small, not searched."""
    obama = faces_dir / "probe" / "obama.jpg"
    result = facestream(
        "identify", "--summary", "--gallery", gallery, "--min-face-px", "4000", str(obama), model_dir=models
    )
    assert result.returncode == 0, result.stderr
    found, summary = stdout_objects(result.stdout)
    assert found == []
    assert summary is not None and summary["rejected"] == {"too_small": 1}
    assert summary["per_source"][0]["faces_without_candidate"] == [str(obama)]
    assert summary_lines(result.stderr)[str(obama)] == (
        f"{obama} (image): 1 face (1 rejected: 1 too small); no candidate"
    )


def _pty_run(*args: str, model_dir: Path, columns: int = 150) -> tuple[int, str]:
    """`facestream ARGS` with stderr on a pseudo-terminal `columns` wide: (exit status, what it drew)."""
    script = Path(sys.executable).with_name("facestream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "facestream"]
    env = {**os.environ, "FACESTREAM_MODEL_DIR": str(model_dir), "FACESTREAM_MODEL_EXECUTION_PROVIDER": "cpu"}
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [*command, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child, env=env
    )
    os.close(child)
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(main, 65536):
            drawn += chunk
    os.close(main)
    return process.wait(timeout=300), drawn.decode(errors="replace")


def test_progress_is_drawn_on_a_terminal_for_folders_and_videos(
    faces_dir: Path, walk_past_video: Path, gallery: str, models: Path
) -> None:
    scenes = faces_dir / "scenes"
    status, drawn = _pty_run(
        "identify", "--gallery", gallery, "--fps", "5", str(walk_past_video), str(scenes), model_dir=models
    )
    assert status == 0, drawn
    frames = drawn.replace("\r\n", "\n").replace("\r", "\n")
    # a video's bar counts seconds of media against its length from the header; a folder's, images
    assert re.search(rf"(^|\n){re.escape(walk_past_video.name)}: +\d+%\|.*\| \d+\.\d/6\.0 s", frames), frames
    assert re.search(r"(^|\n)scenes: +\d+%\|.*\| [0-7]/7 \[", frames), frames
    assert re.search(r"\d+ faces?, \d+ candidates?", frames)  # counts so far, beside the bar
    # the bars are gone at the end; the summary is what stays
    assert frames.rstrip().splitlines()[-1].startswith(f"  {scenes} (folder, 7 images): 11 faces; ")


def test_a_stream_that_ends_says_so_once(mjpeg_camera: Any, gallery: str, models: Path) -> None:
    """An MJPEG camera that closes the connection after 10 frames: one error line, and the summary
    counts what was read before."""
    camera = mjpeg_camera(mode="drop", fail_after=10, fps=20)
    result = facestream("identify", "--gallery", gallery, "--fps", "5", camera.url, model_dir=models)
    assert result.returncode == 1
    assert errors(result.stderr) == [f"source {camera.url}: stream ended (connection closed)"]
    assert noise(result.stderr) == []
    line = summary_lines(result.stderr)[camera.url]
    assert re.fullmatch(
        rf"{re.escape(camera.url)} \(stream\): \d+ frames?, no face; stopped \(see above\)", line
    )


def test_opencv_and_ffmpeg_say_nothing_of_their_own(mjpeg_camera: Any, gallery: str, models: Path) -> None:
    """An HTTP camera serving bytes that are no video goes to OpenCV's FFmpeg, which fails to open
    it: the user gets identify's line naming the source, not OpenCV's `[ WARN:0@...] global
    cap.cpp` (which the same run prints when the user asks for OpenCV's warnings)."""
    camera = mjpeg_camera(mode="video", video=b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    script = Path(sys.executable).with_name("facestream")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    env |= {"FACESTREAM_MODEL_DIR": str(models), "FACESTREAM_MODEL_EXECUTION_PROVIDER": "cpu"}
    runs = {
        level: subprocess.run(
            [str(script), "identify", "--gallery", gallery, camera.url],
            capture_output=True,
            text=True,
            timeout=300,
            env=env | ({"OPENCV_LOG_LEVEL": level} if level else {}),
        )
        for level in ("", "WARNING")
    }
    quiet, asked = runs[""], runs["WARNING"]
    assert quiet.returncode == 1
    assert errors(quiet.stderr) == [f"source {camera.url}: cannot connect"]
    assert noise(quiet.stderr) == []
    assert any(line.startswith("[ WARN:") and "cap.cpp" in line for line in noise(asked.stderr)), asked.stderr


@pytest.mark.parametrize("when", ["reading", "opening"])
def test_interrupted_it_still_summarises_what_it_read(
    mjpeg_camera: Any, gallery: str, models: Path, when: str
) -> None:
    """Ctrl-C is how a live stream is stopped: exit 130, the summary of what was read, no traceback;
    whether it lands while frames are read or while the gallery and the models are being opened
    (a KeyboardInterrupt raised there once left identify hung on its way out)."""
    camera = mjpeg_camera(mode="stream", fps=20)
    script = Path(sys.executable).with_name("facestream")
    env = {**os.environ, "FACESTREAM_MODEL_DIR": str(models), "FACESTREAM_MODEL_EXECUTION_PROVIDER": "cpu"}
    process = subprocess.Popen(
        [str(script), "identify", "--gallery", gallery, "--fps", "5", camera.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    if when == "reading":
        while camera.frames_sent < 40 and time.monotonic() < deadline:  # 2 s of the stream read
            time.sleep(0.1)
    else:  # its settings are logged just before the gallery and the models are opened
        while not any(" identify: {" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, "".join(lines)
    reader.join(10)
    stderr = "".join(lines)
    assert process.stdout is not None and process.stdout.read() == ""
    assert noise(stderr) == [], stderr
    assert "interrupted: stopped reading; the summary covers what was read" in stderr
    line = summary_lines(stderr)[camera.url]
    read = r"\d+ frames?, no face" if when == "reading" else r"nothing read|\d+ frames?, no face"
    assert re.fullmatch(rf"{re.escape(camera.url)} \(stream\): ({read})", line), line


# -- identify --annotate DIR ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def annotated(
    faces_dir: Path, gallery: str, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Two scenes with people who are not enrolled (kit_harington, the person behind obama and
    biden), in a folder whose name is markup: (the run, DIR)."""
    root = tmp_path_factory.mktemp("annotate")
    cameras = root / "<b>cams"
    cameras.mkdir()
    for scene in ("obama_and_biden", "kit_harington_and_rose_leslie"):
        shutil.copy(faces_dir / "scenes" / f"{scene}.jpg", cameras)
    out = root / "out" / "pictures"
    result = facestream(
        "identify", "--gallery", gallery, "--annotate", str(out), str(cameras), model_dir=models
    )
    return result, out


def test_annotate_writes_one_picture_per_candidate_and_a_page(
    annotated: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = annotated
    assert result.returncode == 0, result.stderr
    assert noise(result.stderr) == []
    found = candidates(result)
    assert sorted(c["identity"] for c in found) == ["biden", "obama", "rose_leslie"]
    ids = [c["candidate_id"] for c in found]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", *(f"{i}.jpg" for i in ids), *(f"{i}.thumb.jpg" for i in ids)]
    )
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    page = (out / "index.html").read_text()
    for c in found:
        assert f'<a href="{c["candidate_id"]}.jpg"><img src="{c["candidate_id"]}.thumb.jpg"' in page
        assert f"<td>{c['identity']}</td>" in page and f"{c['score']:.2f}" in page
    assert "<b>" not in page and "/&lt;b&gt;cams/" in page  # autoescaped: the name is text


def test_each_annotated_picture_is_an_audited_export(
    annotated: tuple[subprocess.CompletedProcess[str], Path], gallery: str
) -> None:
    result, out = annotated
    exported = {
        r.objects["candidate_id"]: r
        for r in AuditLog(Path(gallery) / "audit.log").records()
        if r.action == "candidate.export"
    }
    for c in candidates(result):
        record = exported[c["candidate_id"]]
        assert record.authorisation_id == c["authorisation_id"]
        assert record.objects["identity"] == c["identity"]
        assert record.objects["file"] == str(out / f"{c['candidate_id']}.jpg")


def test_annotate_hides_every_face_but_the_candidates(
    annotated: tuple[subprocess.CompletedProcess[str], Path], finder: FaceFinder
) -> None:
    """In each picture the detector finds the candidate's face and no other: the unenrolled people
    and the other candidate of the same frame are pixelated past detection."""
    result, out = annotated
    for c in candidates(result):
        original = real_faces(finder, Path(c["source"]))
        candidate_box = BBox(*c["bbox"])
        others = [f.bbox for f in original if iou(f.bbox, candidate_box) < 0.5]
        assert len(others) == len(original) - 1 >= 1  # someone else is in every scene
        seen = [d.bbox for d in finder.detector.detect(read(out / f"{c['candidate_id']}.jpg"))]
        assert any(iou(box, candidate_box) > 0.5 for box in seen), c["identity"]
        for hidden in others:
            assert all(iou(box, hidden) < 0.1 for box in seen), (c["identity"], hidden)


def test_annotate_into_a_folder_that_is_not_empty_is_one_line_and_exit_2(
    faces_dir: Path, gallery: str, tmp_path: Path, models: Path
) -> None:
    (tmp_path / "earlier.jpg").write_bytes(b"a picture of an earlier run")
    probe = str(faces_dir / "probe" / "obama.jpg")
    result = facestream(
        "identify", "--gallery", gallery, "--annotate", str(tmp_path), probe, model_dir=models
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert non_log_lines(result.stderr) == [
        f"facestream identify: error: argument --annotate: {tmp_path}: not empty; give a new or empty "
        "folder (see --help)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.jpg"]
