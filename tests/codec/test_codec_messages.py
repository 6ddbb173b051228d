"""Every message the pipeline produces survives its codec and matches its published schema."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import fastavro
import numpy as np
import pytest
from fastavro.validation import validate

from facestream import codec
from facestream.camera.sampler import FrameEncoder
from facestream.camera.sources import Captured
from facestream.camera.spec import CameraSpec, parse_camera
from facestream.gallery.store import GalleryHit
from facestream.messages import Candidate, Embedding, EpisodeEnd, Face, FaceMatch, Frame, FrameRef, Hit
from facestream.review import wire
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.episodes import EpisodeTracker
from facestream.stages.match import MatchStage
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.hits import make_hit

SCHEMAS = Path(str(codec.BUILTIN.root))


@pytest.fixture(scope="module")
def produced(faces_dir: Path, finder: FaceFinder, embedder: FaceEmbedder) -> dict[str, list[Any]]:
    """One of each message type, made by the code that makes them in production."""
    spec = parse_camera(
        b'{"camera_id": "gate-3", "url": "rtsp://op:pw@10.1.2.3/main", "fps": 4, '
        b'"start_at_ms": 1700000000000}'
    )
    image = cv2.imread(str(faces_dir / "scenes" / "two_people.jpg"))
    assert image is not None
    frame = FrameEncoder(jpeg_quality=80).frame(
        spec, Captured(np.asarray(image, np.uint8), 1_700_000_000_123)
    )
    faces = DetectStage(finder, max_frame_pixels=40_000_000, thumbnail_px=96).faces_in(frame)
    assert len(faces) >= 2, "the scene shows two people"
    outcomes = EmbedStage(embedder).process(faces)
    embeddings = [e for o in outcomes if isinstance(o, list) for e in o]
    # the matcher's hit for a gallery answer, then the episode step's candidate for it
    hits = [
        MatchStage._hit(e, GalleryHit("entry-1", "person-1", "auth-7", 0.81234567), "north-gate")
        for e in embeddings
    ]
    now_s = [1_700_000_001.0]
    tracker = EpisodeTracker({}, gap_ms=30_000, clock=lambda: now_s[0])
    candidates = [c for c in (tracker.observe(h) for h in hits) if c is not None]
    assert candidates, "the first hit of an episode opens a candidate"
    now_s[0] += 31  # no hit for the gap: each episode has ended
    ends = [due.end for due in tracker.ends_due()]
    assert len(ends) == len(candidates)
    return {
        "cameras": [spec],
        "frames": [frame],
        "faces": faces,
        "embeddings": embeddings,
        "hits": hits,
        "matches": candidates,
        "episodes": ends,
    }


CODECS: dict[str, codec.Codec[Any]] = {
    "cameras": codec.CAMERAS,
    "frames": codec.FRAMES,
    "faces": codec.FACES,
    "embeddings": codec.EMBEDDINGS,
    "hits": codec.HITS,
    "matches": codec.MATCHES,
    "episodes": codec.EPISODES,
}
"""The pipeline's codecs, round-tripped below on messages the real stages produce."""

REVIEW_CODECS: dict[str, codec.Codec[Any]] = {"reviews": wire.REVIEWS, "alerts": wire.ALERTS}
"""The review layer's codecs (round-tripped in tests/review/test_wire.py)."""


def test_every_subject_in_schemas_has_a_codec_at_its_latest_version() -> None:
    subjects = {p.name: p for p in SCHEMAS.iterdir() if p.is_dir() and not p.name.startswith("_")}
    every = CODECS | REVIEW_CODECS
    assert set(subjects) == set(every)
    for name, c in every.items():
        latest = max(int(p.stem[1:]) for p in subjects[name].glob("v*.avsc"))
        assert c.version == latest, f"{name}: the codec writes v{c.version}, the newest schema is v{latest}"


@pytest.mark.parametrize("subject", list(CODECS))
def test_produced_messages_round_trip_and_match_the_schema_file(
    subject: str, produced: dict[str, list[Any]]
) -> None:
    c = CODECS[subject]
    schema_id = {v: int(k) for k, v in json.loads((SCHEMAS / "index.json").read_text())["schemas"].items()}[
        c.path
    ]
    # any Avro consumer, with only the .avsc file, reads what the codec wrote
    plain = fastavro.parse_schema(json.loads((SCHEMAS / c.path).read_text()))
    for message in produced[subject]:
        record = c.to_record(message)
        assert validate(record, plain)
        data = c.encode(message)
        assert struct.unpack(">bI", data[:5]) == (0, schema_id)
        body = fastavro.schemaless_reader(io.BytesIO(data[5:]), plain, None)
        assert isinstance(body, dict) and set(body) == {f["name"] for f in plain["fields"]}
        back = c.decode(data)
        assert type(back) is type(message)
        assert c.encode(back) == data  # float32 fields settle after one trip: stable from then on
        _assert_same(message, back)


def _assert_same(sent: Any, got: Any) -> None:
    """Equal, with the schema's 32-bit floats compared as float32."""
    if isinstance(sent, CameraSpec):
        assert got == sent
        return
    if isinstance(sent, EpisodeEnd):
        assert np.float32(got.best_score) == np.float32(sent.best_score)
        assert replace(got, best_score=sent.best_score) == sent
        return
    assert got.ref == sent.ref
    if isinstance(sent, Frame):
        assert (got.width, got.height, got.jpeg) == (sent.width, sent.height, sent.jpeg)
        return
    f32 = np.float32
    for name in ("x1", "y1", "x2", "y2"):
        assert f32(getattr(got.bbox, name)) == f32(getattr(sent.bbox, name))
    assert got.face_index == sent.face_index
    assert got.thumbnail_jpeg == sent.thumbnail_jpeg
    if isinstance(sent, Face):
        assert got.aligned == sent.aligned
        assert np.array_equal(np.float32(got.landmarks), np.float32(sent.landmarks))
    if isinstance(sent, Embedding):
        assert got.model_id == sent.model_id
        assert np.array_equal(got.vector, sent.vector.astype(np.float32))
    if isinstance(sent, Hit | Candidate):
        assert (got.identity, got.entry_id, got.authorisation_id) == (
            sent.identity,
            sent.entry_id,
            sent.authorisation_id,
        )
        assert f32(got.score) == f32(sent.score)
    if isinstance(sent, Candidate):
        assert (got.candidate_id, got.episode_id) == (sent.candidate_id, sent.episode_id)


def test_hits_and_matches_hold_exactly_the_fields_of_a_face_match_and_a_candidate_keeps_its_hits() -> None:
    """Hit and Candidate share FaceMatch's fields, and one helper writes them: the `hits` schema holds
    exactly those (the frame reference flat), `matches` those and the candidate's two ids. A field
    added to FaceMatch without its place in both schemas fails here."""
    ref = {f.name for f in dataclasses.fields(FrameRef)}
    shared = {f.name for f in dataclasses.fields(FaceMatch)} - {"ref"} | ref

    def schema_fields(c: codec.Codec[Any]) -> set[str]:
        return {f["name"] for f in json.loads((SCHEMAS / c.path).read_text())["fields"]}

    assert schema_fields(codec.HITS) == shared
    assert schema_fields(codec.MATCHES) == shared | {"candidate_id", "episode_id"}
    hit = make_hit("gate", 1_700_000_000_000)
    candidate = Candidate.open_episode(hit)
    assert candidate.match_fields() == hit.match_fields()
    assert len(hit.match_fields()) == len(dataclasses.fields(FaceMatch))


def test_frames_keep_every_millisecond_of_their_capture_time() -> None:
    # datetime.timestamp() * 1000 is a float: it lost a millisecond for values like this one
    spec = CameraSpec(camera_id="c", url="x.mp4")
    image = np.zeros((8, 8, 3), np.uint8)
    for ms in (139_841_416_591_330, 1_700_000_000_001, 0, -1):
        frame = FrameEncoder().frame(spec, Captured(image, ms))
        assert codec.FRAMES.decode(codec.FRAMES.encode(frame)).ref.captured_at_ms == ms


def test_the_source_field_never_carries_credentials(produced: dict[str, list[Any]]) -> None:
    for subject in ("frames", "faces", "embeddings", "hits", "matches"):
        for message in produced[subject]:
            data = CODECS[subject].encode(message)
            assert b"pw@" not in data and b"op:" not in data
            assert CODECS[subject].decode(data).ref.source == "rtsp://***@10.1.2.3/main"
