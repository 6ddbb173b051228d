"""Hypothesis strategies for fuzzing: Avro records drawn from the real schemas (any value the wire
can carry, NaN and extremes included), JPEG mutations of a real photo, and hostile JSON values.

The fuzz suites are deterministic (`derandomize=True`), so CI runs the same cases every time and
a failure reproduces locally; `FUZZ` sets the example counts in one place.
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import fastavro
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from facestream import codec
from facestream.messages import ALIGNED_BYTES


def fuzz(examples: int) -> settings:
    """A reproducible fuzz budget: fixed examples, derandomised, no deadline (CI machines are slow)."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- Avro records drawn from a schema -------------------------------------------------------------

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
hostile_floats = st.one_of(
    st.floats(width=32),  # NaN, infinities, subnormals, the extremes
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-3, 3.4e38]),
)
hostile_doubles = st.one_of(st.floats(), st.sampled_from([0.0, 1.0, -1.0, 1e308]))
hostile_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.sampled_from(
        ["", "confirm", "reject", "0123456789abcdef01234567", "x" * 300, "../../etc/passwd", "a\nb"]
    ),
)


def _strip_logical(schema: Any) -> Any:
    """The schema without logical types, so any long (not only a valid instant) can be written."""
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    return schema


def record_strategy(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values for an Avro schema (JSON form), including every edge the type allows."""
    named = {} if named is None else named
    if isinstance(schema, str):
        primitive: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.one_of(st.integers(*INT32), st.sampled_from([0, -1, 1, 112, 512, 2**31 - 1])),
            "long": st.one_of(st.integers(*INT64), st.sampled_from([0, -1, 1, 1_700_000_000_000])),
            "float": hostile_floats,
            "double": hostile_doubles,
            "string": hostile_text,
            # a full-size aligned crop now and then, so the checks behind the crop size run too
            "bytes": st.one_of(
                st.binary(max_size=200), st.integers(0, 255).map(lambda b: bytes([b]) * ALIGNED_BYTES)
            ),
        }
        if schema in primitive:
            return primitive[schema]
        return st.deferred(lambda: named[schema.rsplit(".", 1)[-1]])
    if isinstance(schema, list):
        return st.one_of(*(record_strategy(s, named).map(lambda v, s=s: (s, v)) for s in schema)).map(
            _union_value
        )
    kind = schema["type"]
    if kind == "record":
        fields = {f["name"]: record_strategy(f["type"], named) for f in schema["fields"]}
        strategy = st.fixed_dictionaries(fields)
        named[schema["name"]] = strategy
        return strategy
    if kind == "array":
        item = record_strategy(schema["items"], named)
        return st.one_of(st.lists(item, max_size=8), st.lists(item, min_size=500, max_size=520))
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "map":
        return st.dictionaries(hostile_text, record_strategy(schema["values"], named), max_size=4)
    return record_strategy(kind, named)


def _union_value(branch_value: tuple[Any, Any]) -> Any:
    _, value = branch_value
    return value


@cache
def writer_schema(subject_path: str) -> Any:
    """The parsed schema of `subject/vN.avsc`, logical types stripped."""
    raw = json.loads((codec.BUILTIN.root / subject_path).read_text())
    return fastavro.parse_schema(_strip_logical(raw))


def wire_records(c: codec.Codec[Any]) -> st.SearchStrategy[bytes]:
    """Well-formed wire messages of `c`'s subject whose field values are anything the schema allows."""
    raw = json.loads((c.schemas.root / c.path).read_text())
    header = struct.pack(">bI", codec.MAGIC, c.schemas.id_of(c.path))

    def encode(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, writer_schema(c.path), record)
        return out.getvalue()

    return record_strategy(_strip_logical(raw)).map(encode)


# -- byte-level mutation of a valid input ----------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few random edits: flips, overwrites, cuts, insertions, duplicated chunks."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "dup", "truncate", "marker"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
        elif op == "truncate":
            del data[at:]
        else:  # a JPEG marker with a random length, where a segment might start
            data[at:at] = (
                b"\xff" + bytes([draw(st.integers(0xC0, 0xFE))]) + draw(st.binary(min_size=2, max_size=6))
            )
    return bytes(data)


# -- JPEGs ---------------------------------------------------------------------------------------


@cache
def sample_jpegs(faces_dir: Path) -> tuple[bytes, ...]:
    """Small real JPEGs (baseline and progressive, colour and grey) made from a test photo."""
    image = cv2.imread(str(faces_dir / "probe" / "obama.jpg"), cv2.IMREAD_COLOR)
    assert image is not None
    small = cv2.resize(image, (96, 64), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    out = []
    for picture, params in (
        (small, [cv2.IMWRITE_JPEG_QUALITY, 80]),
        (small, [cv2.IMWRITE_JPEG_QUALITY, 60, cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (grey, [cv2.IMWRITE_JPEG_QUALITY, 70]),
    ):
        ok, buf = cv2.imencode(".jpg", picture, params)
        assert ok
        out.append(bytes(buf.tobytes()))
    return tuple(out)


def sof_header(width: int, height: int, marker: int = 0xC0, components: int = 3) -> bytes:
    """SOI + a frame header claiming width x height (no pixels): what a decompression bomb looks like."""
    body = struct.pack(">BHHB", 8, height, width, components) + b"\x01\x22\x00" * components
    return b"\xff\xd8" + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


# -- JSON ------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=5)
    ),
    max_leaves=12,
)


def near(
    valid: dict[str, Any], values: st.SearchStrategy[Any] = json_values
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts close to a valid one: some keys dropped, some values replaced, some keys added."""
    keys = sorted(valid)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = dict(valid)
        for key in draw(st.lists(st.sampled_from(keys), max_size=len(keys), unique=True)):
            if draw(st.booleans()):
                del out[key]
            else:
                out[key] = draw(values)
        for key, value in draw(st.dictionaries(hostile_text, values, max_size=2)).items():
            out[key] = value
        return out

    return build()


def json_text(values: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """JSON documents, valid or cut/garbled."""
    return st.one_of(
        values.map(json.dumps),
        st.tuples(values.map(json.dumps), st.integers(0, 40)).map(lambda t: t[0][: max(0, len(t[0]) - t[1])]),
        st.text(max_size=60),
        st.sampled_from(["", "{", "[", "null", "NaN", '{"a": Infinity}', "\ufeff{}", "1e999", "[" * 5000]),
    )
