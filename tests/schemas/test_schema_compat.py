"""The BACKWARD checker against Avro's resolution rules, cross-checked with a real reader (fastavro)."""

from __future__ import annotations

import copy
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest

from facestream import codec
from facestream.codec import SchemaSet
from facestream.messages import Frame, FrameRef
from facestream.schema_compat import check_backward, check_tree, is_backward_compatible

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

OLD: dict[str, Any] = {
    "type": "record",
    "name": "Shot",
    "namespace": "t",
    "fields": [
        {"name": "camera", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "size", "type": "float"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "box", "type": {"type": "record", "name": "Box", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "extra", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "payload", "type": "bytes"},
    ],
}
DATUM: dict[str, Any] = {
    "camera": "gate",
    "count": 7,
    "size": 1.5,
    "kind": "C",
    "box": {"x": 3},
    "tags": ["a", "b"],
    "extra": {"k": 5},
    "note": None,
    "digest": b"\x01\x02\x03\x04",
    "at": 1_700_000_000_000,
    "payload": b"utf-8 text",  # bytes->string resolves for UTF-8 content only (Avro's rule)
}

Edit = Callable[[dict[str, Any]], None]


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def set_type(name: str, new_type: Any) -> Edit:
    return lambda s: field(s, name).__setitem__("type", new_type)


def add(new_field: dict[str, Any]) -> Edit:
    return lambda s: s["fields"].append(new_field)


def remove(name: str) -> Edit:
    return lambda s: s["fields"].remove(field(s, name))


def nested(name: str, edit: Edit) -> Edit:
    return lambda s: edit(field(s, name)["type"])


def rename_field(old: str, new: str, *, alias: bool) -> Edit:
    def edit(s: dict[str, Any]) -> None:
        f = field(s, old)
        f["name"] = new
        if alias:
            f["aliases"] = [old]

    return edit


def edited(edit: Edit) -> dict[str, Any]:
    schema = copy.deepcopy(OLD)
    edit(schema)
    return schema


def read_with(new: dict[str, Any], datum: dict[str, Any]) -> Any:
    """What a real Avro reader with `new` gets from `datum` written with OLD."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(OLD)), datum)
    out.seek(0)
    return fastavro.schemaless_reader(
        out, fastavro.parse_schema(copy.deepcopy(OLD)), fastavro.parse_schema(new)
    )


COMPATIBLE: dict[str, Edit] = {
    "optional field with a null default": add({"name": "zone", "type": ["null", "string"], "default": None}),
    "field with a primitive default": add({"name": "rotation", "type": "int", "default": 0}),
    "record field with a default": add(
        {
            "name": "origin",
            "type": {"type": "record", "name": "Origin", "fields": [{"name": "x", "type": "double"}]},
            "default": {"x": 0.0},
        }
    ),
    "field removed": remove("payload"),
    "int to long": set_type("count", "long"),
    "int to double": set_type("count", "double"),
    "float to double": set_type("size", "double"),
    "string to bytes": set_type("camera", "bytes"),
    "bytes to string": set_type("payload", "string"),
    "enum symbol added": nested("kind", lambda e: e["symbols"].append("D")),
    "enum symbol removed with an enum default": nested(
        "kind", lambda e: e.update(symbols=["A", "B"], default="A")
    ),
    "union widened": set_type("note", ["null", "string", "int"]),
    "type moved into a union": set_type("count", ["null", "int"]),
    "union reads a promoted branch": set_type("count", ["null", "string", "long"]),
    "field renamed with an alias": rename_field("camera", "camera_id", alias=True),
    "record renamed with an alias": lambda s: s.update(name="Picture", aliases=["t.Shot"]),
    "namespace changed": lambda s: s.update(namespace="u"),
    "nested field with a default": nested("box", add({"name": "y", "type": "int", "default": 0})),
    "array items promoted": set_type("tags", {"type": "array", "items": "bytes"}),
    "map values promoted": set_type("extra", {"type": "map", "values": "double"}),
    "docs changed": lambda s: s.update(doc="new words"),
}

# (edit, datum changes that make a real reader fail, where the checker must point)
INCOMPATIBLE: dict[str, tuple[Edit, dict[str, Any], str]] = {
    "field added without a default": (add({"name": "zone", "type": "string"}), {}, "Shot.zone"),
    "int to string": (set_type("count", "string"), {}, "Shot.count"),
    "long to int": (set_type("at", "int"), {}, "Shot.at"),
    "double narrowed to float": (set_type("size", "int"), {}, "Shot.size"),
    "enum symbol removed": (
        nested("kind", lambda e: e.update(symbols=["A", "B"])),
        {"kind": "C"},
        "Shot.kind",
    ),
    "enum renamed": (nested("kind", lambda e: e.update(name="Sort")), {}, "Shot.kind"),
    "fixed size changed": (nested("digest", lambda f: f.update(size=8)), {}, "Shot.digest"),
    "fixed renamed": (nested("digest", lambda f: f.update(name="Hash")), {}, "Shot.digest"),
    "nested field without a default": (
        nested("box", add({"name": "y", "type": "int"})),
        {},
        "Shot.box.y",
    ),
    "union narrowed": (
        lambda s: field(s, "note").update(type="string", default=""),
        {"note": None},
        "Shot.note",
    ),
    "type moved into a union without it": (set_type("count", ["null", "string"]), {}, "Shot.count"),
    "field renamed without an alias": (
        rename_field("camera", "camera_id", alias=False),
        {},
        "Shot.camera_id",
    ),
    "record renamed without an alias": (lambda s: s.update(name="Picture"), {}, "Picture"),
    "array items changed": (set_type("tags", {"type": "array", "items": "int"}), {}, "Shot.tags[]"),
    "map values narrowed": (set_type("extra", {"type": "map", "values": "int"}), {}, "Shot.extra{}"),
    "record became a primitive": (set_type("box", "string"), {}, "Shot.box"),
}

# refused although fastavro reads them: they resolve, but wrongly or not portably
STRICTER: dict[str, tuple[Edit, str]] = {
    "logical type changed": (
        set_type("at", {"type": "long", "logicalType": "timestamp-micros"}),
        "logical type changed from timestamp-millis to timestamp-micros",
    ),
    "union default not for the first branch": (
        add({"name": "zone", "type": ["null", "string"], "default": "north"}),
        "not a valid union",
    ),
}


@pytest.mark.parametrize("name", list(COMPATIBLE))
def test_compatible_edits_pass_and_a_real_reader_reads_the_old_data(name: str) -> None:
    new = edited(COMPATIBLE[name])
    assert check_backward(new, OLD) == []
    got = read_with(new, DATUM)
    assert isinstance(got, dict)
    if name == "optional field with a null default":
        assert got["zone"] is None and got["camera"] == "gate"
    if name == "int to double":
        assert got["count"] == 7.0 and isinstance(got["count"], float)
    if name == "field renamed with an alias":
        assert got["camera_id"] == "gate"


@pytest.mark.parametrize("name", list(INCOMPATIBLE))
def test_incompatible_edits_are_refused_and_a_real_reader_fails_too(name: str) -> None:
    edit, datum_changes, where = INCOMPATIBLE[name]
    new = edited(edit)
    problems = check_backward(new, OLD)
    assert problems and not is_backward_compatible(new, OLD)
    assert any(p.path.startswith(where) for p in problems), problems
    with pytest.raises(Exception):  # noqa: B017 - fastavro raises several types; any failure agrees
        read_with(new, {**DATUM, **datum_changes})


@pytest.mark.parametrize("name", list(STRICTER))
def test_edits_that_resolve_wrongly_are_refused(name: str) -> None:
    edit, reason = STRICTER[name]
    problems = check_backward(edited(edit), OLD)
    assert any(reason in str(p) for p in problems), problems


def test_an_invalid_schema_is_an_error_not_a_verdict() -> None:
    with pytest.raises(ValueError, match="invalid schema"):
        check_backward(edited(add({"name": "zone", "type": "int", "default": "x"})), OLD)


def test_recursive_types_are_checked_without_looping() -> None:
    def node(extra: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}, *extra],
        }

    assert check_backward(node([]), node([])) == []
    assert check_backward(node([{"name": "w", "type": "long", "default": 1}]), node([])) == []
    problems = check_backward(node([{"name": "w", "type": "long"}]), node([]))
    assert [p.path for p in problems] == ["Node.w"]


# -- a v2 of a real subject, through the real codec ----------------------------------------------


def schema_tree(tmp_path: Path, versions: dict[int, dict[str, Any]]) -> Path:
    """A schemas/ directory with frames v1 (the real one) and the given later versions."""
    root = tmp_path / "schemas"
    (root / "frames").mkdir(parents=True)
    shutil.copy(SCHEMAS / "frames" / "v1.avsc", root / "frames" / "v1.avsc")
    index = {"1": "frames/v1.avsc"}
    for number, schema in versions.items():
        (root / "frames" / f"v{number}.avsc").write_text(json.dumps(schema))
        index[str(90 + number)] = f"frames/v{number}.avsc"
    (root / "index.json").write_text(json.dumps({"schemas": index}))
    return root


def frames_v1() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / "frames" / "v1.avsc").read_text())
    return schema


def test_a_frames_v2_with_an_optional_field_reads_v1_bytes_through_the_codec(tmp_path: Path) -> None:
    v2 = frames_v1()
    v2["fields"].append({"name": "content_type", "type": ["null", "string"], "default": None})
    root = schema_tree(tmp_path, {2: v2})
    assert check_tree(root) == []
    schemas = SchemaSet(root)
    v1_codec, v2_codec = codec.FRAMES.with_schemas(schemas, 1), codec.FRAMES.with_schemas(schemas, 2)
    frame = Frame(
        FrameRef("gate-1", "gate-1@1700000000005", 1_700_000_000_005, "rtsp://***@h/s"), 4, 3, b"jpeg"
    )

    old_bytes = v1_codec.encode(frame)
    assert old_bytes == codec.FRAMES.encode(frame)  # the real v1 bytes
    assert v2_codec.decode(old_bytes) == frame
    new_bytes = v2_codec.encode(frame)
    assert new_bytes[1:5] == (92).to_bytes(4, "big") and v2_codec.decode(new_bytes) == frame
    # the new field is there for readers that know it, with its default
    body = fastavro.schemaless_reader(
        io.BytesIO(old_bytes[5:]), schemas.parsed("frames/v1.avsc"), schemas.parsed("frames/v2.avsc")
    )
    assert isinstance(body, dict) and body["content_type"] is None and body["jpeg"] == b"jpeg"


def test_the_tree_check_finds_an_incompatible_version_added_later(tmp_path: Path) -> None:
    v2 = frames_v1()
    v2["fields"].append({"name": "rotation", "type": ["null", "int"], "default": None})
    v3 = copy.deepcopy(v2)
    field(v3, "width")["type"] = "string"
    v3["fields"].append({"name": "zone", "type": "string"})
    problems = check_tree(schema_tree(tmp_path, {2: v2, 3: v3}))
    assert len(problems) == 2
    assert all(p.startswith("frames: v3.avsc cannot read v2.avsc: Frame.") for p in problems)
    assert any("Frame.width: type changed from int to string" in p for p in problems)
    assert any("Frame.zone: field added without a default" in p for p in problems)


def test_the_tree_check_refuses_a_gap_in_version_numbers(tmp_path: Path) -> None:
    v3 = frames_v1()
    problems = check_tree(schema_tree(tmp_path, {3: v3}))
    assert problems == ["frames: versions [1, 3] are not 1..2 without gaps"]
