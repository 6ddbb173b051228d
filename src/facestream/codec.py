"""Wire format: every topic's messages are Avro records behind a 5-byte schema header.

The header is Confluent's wire format (magic byte 0, then a big-endian schema id), with
ids fixed in schemas/index.json rather than handed out by a registry, so any Avro
consumer can read the topics with the .avsc files alone. Frames carry raw JPEG bytes.

A codec writes its subject's newest version and reads every version of it (Avro schema
resolution); schemas/README.md says how a subject evolves, and facestream.schema_compat
checks that it did so compatibly.

Decoding checks what the schema cannot: vector length and finiteness, crop sizes, camera
config bounds. Whatever the bytes, decoding raises nothing but `InvalidMessage`, which
sends the message to the stage's dead-letter topic.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Generic, TypeVar

import fastavro
import numpy as np
from pydantic import ValidationError

from facestream.camera.spec import ZONE, CameraSpec, describe_validation_error
from facestream.errors import InvalidMessage
from facestream.messages import (
    ALIGNED_BYTES,
    BBox,
    Candidate,
    Embedding,
    EpisodeEnd,
    Face,
    FaceMatch,
    Frame,
    FrameRef,
    Hit,
    Quality,
)

MAGIC = 0
HEADER = struct.Struct(">bI")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
T = TypeVar("T")
Record = dict[str, Any]


class SchemaSet:
    """A directory laid out as schemas/: `<subject>/vN.avsc` files and `index.json` with their ids.

    The installed schemas are `BUILTIN`; tests build other sets (a v2 made on the spot)
    to prove that the current codec still reads what older versions wrote.
    """

    def __init__(self, root: Traversable) -> None:
        self.root = root
        self._parsed: dict[str, Any] = {}
        text = (root / "index.json").read_text()
        self.index: dict[int, str] = {int(k): v for k, v in json.loads(text)["schemas"].items()}
        self._ids = {path: schema_id for schema_id, path in self.index.items()}

    def id_of(self, path: str) -> int:
        return self._ids[path]

    def parsed(self, path: str) -> Any:
        """The fastavro-parsed schema of `path` (parsed once)."""
        schema = self._parsed.get(path)
        if schema is None:
            schema = fastavro.parse_schema(json.loads((self.root / path).read_text()))
            self._parsed[path] = schema
        return schema


BUILTIN = SchemaSet(resources.files("facestream.schemas"))


def schema_index() -> dict[int, str]:
    return BUILTIN.index


def load_schema(path: str) -> Any:
    return BUILTIN.parsed(path)


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one message type maps to its subject's current schema and back."""

    subject: str
    version: int
    to_record: Callable[[T], Record]
    from_record: Callable[[Record], T]
    schemas: SchemaSet = BUILTIN

    @property
    def path(self) -> str:
        return f"{self.subject}/v{self.version}.avsc"

    def encode(self, message: T) -> bytes:
        out = io.BytesIO()
        out.write(HEADER.pack(MAGIC, self.schemas.id_of(self.path)))
        fastavro.schemaless_writer(out, self.schemas.parsed(self.path), self.to_record(message))
        return out.getvalue()

    def decode(self, data: bytes) -> T:
        """Read any known version of this subject into the current message type.

        Only `InvalidMessage` leaves this method, whatever the bytes: a consumer must be able
        to dead-letter anything a producer (or an attacker) puts on the topic.
        """
        if len(data) < HEADER.size:
            raise InvalidMessage("truncated", f"{len(data)} bytes is shorter than the header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise InvalidMessage("bad_magic", f"magic byte {magic}")
        writer_path = self.schemas.index.get(schema_id)
        if writer_path is None or not writer_path.startswith(self.subject + "/"):
            raise InvalidMessage("unknown_schema", f"schema id {schema_id} is not a {self.subject} schema")
        # The reader schema is given only when it differs: resolution costs time on every message.
        reader = None if writer_path == self.path else self.schemas.parsed(self.path)
        body = io.BytesIO(data[HEADER.size :])
        try:
            record = fastavro.schemaless_reader(body, self.schemas.parsed(writer_path), reader)
        except Exception as exc:  # fastavro raises EOFError, ValueError, OverflowError... on bad bodies
            raise InvalidMessage("undecodable", f"{type(exc).__name__}: {exc}") from exc
        if body.read(1):
            raise InvalidMessage("undecodable", "trailing bytes after the record")
        try:
            if not isinstance(record, dict):
                raise InvalidMessage("undecodable", "body is not a record")
            return self.from_record(record)
        except InvalidMessage:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidMessage("invalid_fields", str(exc).splitlines()[0]) from exc

    def with_schemas(self, schemas: SchemaSet, version: int) -> Codec[T]:
        """The same mapping over another schema set (how tests check a future version)."""
        return Codec(self.subject, version, self.to_record, self.from_record, schemas)


def frame_ref_to_record(ref: FrameRef) -> Record:
    """The frame-reference fields every per-frame schema starts with (shared with review.wire)."""
    return {
        "camera_id": ref.camera_id,
        "frame_id": ref.frame_id,
        "captured_at_ms": ref.captured_at_ms,
        "source": ref.source,
    }


def frame_ref_from_record(record: Record) -> FrameRef:
    """The inverse of frame_ref_to_record, reading the fields from a decoded record."""
    return FrameRef(
        record["camera_id"], record["frame_id"], avro_millis(record["captured_at_ms"]), record["source"]
    )


def avro_millis(value: int | datetime) -> int:
    """fastavro gives a datetime for timestamp-millis; integer arithmetic keeps every millisecond.

    (`datetime.timestamp() * 1000` is a float and loses one for some values.)
    """
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MS
    return int(value)


def bbox_to_record(box: BBox) -> Record:
    """The `bbox` sub-record of faces, embeddings, hits, matches and alerts."""
    return {"x1": box.x1, "y1": box.y1, "x2": box.x2, "y2": box.y2}


def bbox_from_record(record: Record) -> BBox:
    """A decoded `bbox` sub-record; a non-finite corner is bad input, not a crash downstream."""
    values = [float(record[k]) for k in ("x1", "y1", "x2", "y2")]
    if not all(math.isfinite(v) for v in values):
        raise InvalidMessage("invalid_fields", "bbox is not finite")
    return BBox(*values)


def _quality_record(q: Quality) -> Record:
    return {"det_score": q.det_score, "size_px": q.size_px, "sharpness": q.sharpness, "yaw": q.yaw}


def _quality(record: Record) -> Quality:
    return Quality(
        float(record["det_score"]),
        float(record["size_px"]),
        float(record["sharpness"]),
        float(record["yaw"]),
    )


def _frame_record(frame: Frame) -> Record:
    return {
        **frame_ref_to_record(frame.ref),
        "width": frame.width,
        "height": frame.height,
        "jpeg": frame.jpeg,
    }


def _frame(record: Record) -> Frame:
    return Frame(
        frame_ref_from_record(record), int(record["width"]), int(record["height"]), bytes(record["jpeg"])
    )


def _face_record(face: Face) -> Record:
    return {
        **frame_ref_to_record(face.ref),
        "face_index": face.face_index,
        "bbox": bbox_to_record(face.bbox),
        "landmarks": [c for point in face.landmarks for c in point],
        "quality": _quality_record(face.quality),
        "aligned": face.aligned,
        "thumbnail_jpeg": face.thumbnail_jpeg,
    }


def _face(record: Record) -> Face:
    aligned = bytes(record["aligned"])
    if len(aligned) != ALIGNED_BYTES:
        raise InvalidMessage("bad_crop", f"aligned crop has {len(aligned)} bytes, not {ALIGNED_BYTES}")
    flat = [float(v) for v in record["landmarks"]]
    landmarks = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))
    return Face(
        frame_ref_from_record(record),
        int(record["face_index"]),
        bbox_from_record(record["bbox"]),
        landmarks,
        _quality(record["quality"]),
        aligned,
        bytes(record["thumbnail_jpeg"]),
    )


def _embedding_record(e: Embedding) -> Record:
    return {
        **frame_ref_to_record(e.ref),
        "face_index": e.face_index,
        "bbox": bbox_to_record(e.bbox),
        "quality": _quality_record(e.quality),
        "model_id": e.model_id,
        "vector": e.vector.tolist(),
        "thumbnail_jpeg": e.thumbnail_jpeg,
    }


def _embedding(record: Record) -> Embedding:
    vector = np.asarray(record["vector"], dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0:
        raise InvalidMessage("bad_vector", "vector is empty")
    if not np.isfinite(vector).all():
        raise InvalidMessage("bad_vector", "vector has NaN or infinite values")
    norm = float(np.linalg.norm(vector.astype(np.float64)))  # float32 squares overflow for huge values
    if abs(norm - 1.0) > 1e-3:
        raise InvalidMessage("bad_vector", f"vector is not unit length (norm {norm:.4f})")
    return Embedding(
        frame_ref_from_record(record),
        int(record["face_index"]),
        bbox_from_record(record["bbox"]),
        _quality(record["quality"]),
        record["model_id"],
        vector,
        bytes(record["thumbnail_jpeg"]),
    )


def _face_match_record(m: FaceMatch) -> Record:
    """The fields a hit and a candidate share, as the flat `hits` and `matches` schemas hold them."""
    return {
        **frame_ref_to_record(m.ref),
        "face_index": m.face_index,
        "bbox": bbox_to_record(m.bbox),
        "score": m.score,
        "identity": m.identity,
        "entry_id": m.entry_id,
        "authorisation_id": m.authorisation_id,
        "model_id": m.model_id,
        "thumbnail_jpeg": m.thumbnail_jpeg,
        "zone": m.zone,
    }


def _face_match_fields(record: Record) -> dict[str, Any]:
    """The inverse of _face_match_record: FaceMatch's fields, as keyword arguments for a Hit or a
    Candidate."""
    return {
        "ref": frame_ref_from_record(record),
        "face_index": int(record["face_index"]),
        "bbox": bbox_from_record(record["bbox"]),
        "score": float(record["score"]),
        "identity": record["identity"],
        "entry_id": record["entry_id"],
        "authorisation_id": record["authorisation_id"],
        "model_id": record["model_id"],
        "thumbnail_jpeg": bytes(record["thumbnail_jpeg"]),
        "zone": zone_from_record(record),
    }


def zone_from_record(record: Record) -> str | None:
    """The record's zone: None for a v1 record (resolved to the default); a zone name otherwise, as
    a camera's config allows it, so no consumer (the review pages, a downstream router) gets
    anything else in it."""
    zone = record.get("zone")
    if zone is not None and not re.fullmatch(ZONE, zone):
        problem = f"zone {zone[:70]!r} is not a zone name (1-64 of A-Za-z0-9._-)"
        raise InvalidMessage("invalid_fields", problem)
    return zone


def _hit(record: Record) -> Hit:
    return Hit(**_face_match_fields(record))


def _candidate_record(c: Candidate) -> Record:
    return {"candidate_id": c.candidate_id, "episode_id": c.episode_id, **_face_match_record(c)}


def _candidate(record: Record) -> Candidate:
    return Candidate(
        candidate_id=record["candidate_id"], episode_id=record["episode_id"], **_face_match_fields(record)
    )


def _episode_end_record(e: EpisodeEnd) -> Record:
    return asdict(e)  # flat, its fields named as the schema's


def _episode_end(record: Record) -> EpisodeEnd:
    if int(record["hits"]) < 1:
        raise InvalidMessage("invalid_fields", f"an episode of {record['hits']} hits")
    return EpisodeEnd(
        candidate_id=record["candidate_id"],
        episode_id=record["episode_id"],
        identity=record["identity"],
        camera_id=record["camera_id"],
        zone=zone_from_record(record),
        authorisation_id=record["authorisation_id"],
        first_seen_ms=avro_millis(record["first_seen_ms"]),
        last_seen_ms=avro_millis(record["last_seen_ms"]),
        hits=int(record["hits"]),
        best_score=float(record["best_score"]),
        ended_at_ms=avro_millis(record["ended_at_ms"]),
    )


def _camera_record(spec: CameraSpec) -> Record:
    return spec.model_dump()


def _camera(record: Record) -> CameraSpec:
    start = record.get("start_at_ms")
    try:
        return CameraSpec.model_validate(
            {**record, "start_at_ms": None if start is None else avro_millis(start)}
        )
    except ValidationError as exc:
        raise InvalidMessage("invalid_fields", describe_validation_error(exc)) from None


CAMERAS: Codec[CameraSpec] = Codec("cameras", 2, _camera_record, _camera)
FRAMES: Codec[Frame] = Codec("frames", 1, _frame_record, _frame)
FACES: Codec[Face] = Codec("faces", 1, _face_record, _face)
EMBEDDINGS: Codec[Embedding] = Codec("embeddings", 1, _embedding_record, _embedding)
HITS: Codec[Hit] = Codec("hits", 2, _face_match_record, _hit)
MATCHES: Codec[Candidate] = Codec("matches", 2, _candidate_record, _candidate)
EPISODES: Codec[EpisodeEnd] = Codec("episodes", 1, _episode_end_record, _episode_end)
