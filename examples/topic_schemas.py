"""Decode facestream's topics with the schema files alone (schemas/ and its index.json).

A downstream team needs no facestream code: every message value is Confluent's wire format
(byte 0 = 0, bytes 1-4 = the writer's schema id, then Avro binary), and schemas/index.json maps
each id to its .avsc file. A message is read with the schema that wrote it and resolved to the
newest version of its subject, so a consumer keeps working when facestream adds a version.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
HEADER = struct.Struct(">bI")


class NotAFacestreamMessage(ValueError):
    """Bad magic byte, unknown schema id, a subject other than the expected one, or a corrupt body."""


@dataclass(frozen=True)
class Decoded:
    subject: str  # e.g. "alerts"
    schema_id: int
    value: dict[str, Any]


class TopicSchemas:
    """Every published schema by id; the newest version of each subject is the reader's."""

    def __init__(self, schemas_dir: Path = SCHEMAS_DIR) -> None:
        index = json.loads((schemas_dir / "index.json").read_text())
        self._writers: dict[int, tuple[str, Any]] = {}
        newest: dict[str, tuple[int, Any]] = {}
        for schema_id, relative in index["schemas"].items():
            subject, version = relative.split("/")[0], int(relative.split("/v")[1].split(".")[0])
            parsed = fastavro.parse_schema(json.loads((schemas_dir / relative).read_text()))
            self._writers[int(schema_id)] = (subject, parsed)
            if subject not in newest or version > newest[subject][0]:
                newest[subject] = (version, parsed)
        self._readers = {subject: parsed for subject, (_, parsed) in newest.items()}

    def decode(self, data: bytes, subject: str | None = None) -> Decoded:
        if len(data) < HEADER.size:
            raise NotAFacestreamMessage(f"{len(data)} bytes: shorter than the wire header")
        magic, schema_id = HEADER.unpack_from(data)
        if magic != 0 or schema_id not in self._writers:
            raise NotAFacestreamMessage(f"magic {magic}, schema id {schema_id}: not in schemas/index.json")
        written_as, writer = self._writers[schema_id]
        if subject is not None and written_as != subject:
            raise NotAFacestreamMessage(f"schema id {schema_id} is {written_as}, not {subject}")
        try:
            record = fastavro.schemaless_reader(
                BytesIO(data[HEADER.size :]), writer, self._readers[written_as]
            )
        except Exception as exc:  # fastavro raises several types for a corrupt body
            raise NotAFacestreamMessage(f"{written_as}: body does not decode: {exc}") from None
        return Decoded(written_as, schema_id, as_json(record))


def as_json(value: Any) -> Any:
    """JSON-ready: timestamp-millis back to ms since the epoch (as the `_ms` names say), bytes
    (a match's face thumbnail) as base64."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value
