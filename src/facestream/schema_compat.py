"""BACKWARD compatibility of Avro schemas: can a reader with the new schema read the old data?

Consumers are upgraded before producers, and `codec.decode` reads every known version of a
subject into the current message type, so each new version must resolve, under Avro's
schema-resolution rules, every datum an older version can write:

- records match by unqualified name (or a reader alias); a reader field absent from the
  writer needs a valid default; writer fields the reader dropped are skipped;
- primitives must be equal or an Avro promotion: int→long→float→double, string↔bytes;
- enums: every writer symbol must exist in the reader, unless the reader has a default
  symbol; fixed: same name and size; arrays and maps: by their items and values;
- a writer union needs every branch readable; a reader union needs a branch that reads
  the writer's type.

Stricter than the specification on purpose: a changed `logicalType` is refused (a long read
as timestamp-micros instead of -millis resolves, and is silently wrong by 1000x).

Run `python -m facestream.schema_compat [DIR]` to check every consecutive version pair of
every subject in a schemas directory (exit 1 on any incompatibility).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")
Schema = Any  # Avro schema JSON: a type name, a list (union) or an object


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """Where (a dotted path into the reader schema) and why old data cannot be read."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def check_backward(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Everything that stops `reader` (new) from reading data written with `writer` (old).

    Raises ValueError if either is not a valid Avro schema.
    """
    reader, writer = _parse(reader), _parse(writer)
    checker = _Checker(_names(reader), _names(writer))
    return checker.check(reader, writer, _root_name(reader))


def is_backward_compatible(reader: Schema, writer: Schema) -> bool:
    return not check_backward(reader, writer)


def digest(schema: Schema) -> str:
    """sha256 of a schema without its docs: what must never change once a version is published."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return hashlib.sha256(json.dumps(strip(schema), sort_keys=True).encode()).hexdigest()


def subject_versions(root: Path) -> dict[str, list[Path]]:
    """Every subject in a schemas directory with its version files, oldest first."""
    subjects: dict[str, list[Path]] = {}
    for subject in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        versions = [(int(m.group(1)), p) for p in subject.iterdir() if (m := VERSION_FILE.match(p.name))]
        if versions:
            subjects[subject.name] = [p for _, p in sorted(versions)]
    return subjects


def check_tree(root: Path) -> list[str]:
    """Every incompatibility between consecutive versions of every subject under `root`."""
    problems = []
    for subject, paths in subject_versions(root).items():
        numbers = [int(VERSION_FILE.match(p.name).group(1)) for p in paths]  # type: ignore[union-attr]
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(f"{subject}: versions {numbers} are not 1..{len(numbers)} without gaps")
        for old, new in itertools.pairwise(paths):
            try:
                issues = [str(i) for i in check_backward(_load(new), _load(old))]
            except (ValueError, OSError) as exc:
                issues = [str(exc)]
            problems += [f"{subject}: {new.name} cannot read {old.name}: {issue}" for issue in issues]
    return problems


def _load(path: Path) -> Schema:
    return json.loads(path.read_text())


# -- names -------------------------------------------------------------------------------------


def _parse(schema: Schema) -> Schema:
    """Validated, with every name made a full name (fastavro resolves namespaces for us)."""
    try:
        return fastavro.parse_schema(schema, _write_hint=False)
    except Exception as exc:  # SchemaParseException, UnknownType, ...
        raise ValueError(f"invalid schema: {exc}") from exc


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _root_name(schema: Schema) -> str:
    if isinstance(schema, dict) and "name" in schema:
        return _short(str(schema["name"]))
    return "$"


def _names(schema: Schema) -> dict[str, dict[str, Any]]:
    """Every named type defined in a parsed schema, by full name (for references by name)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Schema) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in NAMED:
                found[str(node["name"])] = node
                for field in node.get("fields", []):
                    walk(field["type"])
            elif kind == "array":
                walk(node["items"])
            elif kind == "map":
                walk(node["values"])
            elif isinstance(kind, (dict, list)):
                walk(kind)

    walk(schema)
    return found


# -- the resolution rules ------------------------------------------------------------------------


class _Checker:
    def __init__(self, reader_names: dict[str, dict[str, Any]], writer_names: dict[str, dict[str, Any]]):
        self._reader_names = reader_names
        self._writer_names = writer_names
        self._assumed: set[tuple[str, str]] = set()  # named pairs under check: recursion ends here

    def _deref(self, schema: Schema, names: dict[str, dict[str, Any]]) -> Schema:
        """A type given by name becomes its definition; `{"type": X}` wrappers are unwrapped."""
        while True:
            if isinstance(schema, str) and schema not in PRIMITIVES:
                return names[schema]
            if isinstance(schema, dict) and (
                isinstance(schema.get("type"), (dict, list))
                or ("name" not in schema and schema.get("type") in names)
            ):
                schema = schema["type"]
                continue
            return schema

    def check(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        reader = self._deref(reader, self._reader_names)
        writer = self._deref(writer, self._writer_names)
        if isinstance(writer, list):
            problems = []
            for i, branch in enumerate(writer):
                problems += self.check(reader, branch, f"{path}[writer branch {i}: {_kind(branch)}]")
            return problems
        if isinstance(reader, list):
            for branch in reader:
                if not self.check(branch, writer, path):
                    return []
            return [Incompatibility(path, f"no branch of the reader union reads {_kind(writer)}")]
        r_kind, w_kind = _kind(reader), _kind(writer)
        logical = self._logical(reader, writer, path)
        if logical:
            return logical
        if r_kind in PRIMITIVES or w_kind in PRIMITIVES:
            if r_kind == w_kind or r_kind in PROMOTIONS.get(w_kind, ()):
                return []
            return [Incompatibility(path, f"type changed from {w_kind} to {r_kind}")]
        if r_kind != w_kind and not {r_kind, w_kind} <= {"record", "error"}:
            return [Incompatibility(path, f"type changed from {w_kind} to {r_kind}")]
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        name_problem = self._names_match(reader, writer, path)
        if name_problem:
            return [name_problem]
        if r_kind == "fixed":
            if reader["size"] != writer["size"]:
                return [
                    Incompatibility(path, f"fixed size changed from {writer['size']} to {reader['size']}")
                ]
            return []
        if r_kind == "enum":
            return self._enum(reader, writer, path)
        return self._record(reader, writer, path)

    def _logical(self, reader: Schema, writer: Schema, path: str) -> list[Incompatibility]:
        r = reader.get("logicalType") if isinstance(reader, dict) else None
        w = writer.get("logicalType") if isinstance(writer, dict) else None
        if r != w:
            return [Incompatibility(path, f"logical type changed from {w} to {r}")]
        if r == "decimal" and (reader.get("precision"), reader.get("scale", 0)) != (
            writer.get("precision"),
            writer.get("scale", 0),
        ):
            return [Incompatibility(path, "decimal precision or scale changed")]
        return []

    def _names_match(
        self, reader: dict[str, Any], writer: dict[str, Any], path: str
    ) -> Incompatibility | None:
        r_name, w_name = str(reader["name"]), str(writer["name"])
        aliases = {str(a) for a in reader.get("aliases", [])}
        aliases |= {_short(a) for a in aliases}
        if _short(r_name) == _short(w_name) or w_name in aliases or _short(w_name) in aliases:
            return None
        return Incompatibility(
            path, f"{_kind(reader)} name changed from {w_name} to {r_name} without an alias"
        )

    def _enum(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Incompatibility]:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and reader.get("default") is None:
            return [
                Incompatibility(path, f"enum symbols removed without an enum default: {', '.join(missing)}")
            ]
        return []

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Incompatibility]:
        key = (str(reader["name"]), str(writer["name"]))
        if key in self._assumed:
            return []  # a recursive type, already being checked further up
        self._assumed.add(key)
        try:
            return self._fields(reader, writer, path)
        finally:
            self._assumed.discard(key)

    def _fields(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[Incompatibility]:
        by_name = {f["name"]: f for f in writer.get("fields", [])}
        problems: list[Incompatibility] = []
        for field in reader.get("fields", []):
            where = f"{path}.{field['name']}"
            old = next(
                (by_name[n] for n in (field["name"], *field.get("aliases", [])) if n in by_name),
                None,
            )
            if old is not None:
                problems += self.check(field["type"], old["type"], where)
            elif "default" not in field:
                problems.append(Incompatibility(where, "field added without a default"))
            elif not self._default_ok(field["type"], field["default"]):
                problems.append(
                    Incompatibility(
                        where, f"default {field['default']!r} is not a valid {_kind(field['type'])}"
                    )
                )
        return problems

    def _default_ok(self, schema: Schema, value: Any) -> bool:
        """Whether `value` is a valid JSON default for `schema` (a union's is for its first branch)."""
        schema = self._deref(schema, self._reader_names)
        if isinstance(schema, list):
            return bool(schema) and self._default_ok(schema[0], value)
        kind = _kind(schema)
        if kind == "null":
            return value is None
        if kind == "boolean":
            return isinstance(value, bool)
        if kind in ("int", "long"):
            bits = 32 if kind == "int" else 64
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
            )
        if kind in ("float", "double"):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind in ("bytes", "string"):
            return isinstance(value, str)
        if kind == "fixed":
            return isinstance(value, str) and len(value) == schema["size"]
        if kind == "enum":
            return value in schema["symbols"]
        if kind == "array":
            return isinstance(value, list) and all(self._default_ok(schema["items"], v) for v in value)
        if kind == "map":
            return isinstance(value, dict) and all(
                self._default_ok(schema["values"], v) for v in value.values()
            )
        if kind in ("record", "error"):
            return isinstance(value, dict) and all(
                self._default_ok(f["type"], value[f["name"]]) if f["name"] in value else "default" in f
                for f in schema.get("fields", [])
            )
        return False


def _kind(schema: Schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema.get("type")
        return kind if isinstance(kind, str) else _kind(kind)
    return str(schema)


def _main(argv: Sequence[str]) -> int:
    root = Path(argv[0]) if argv else Path(str(resources.files("facestream.schemas")))
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    problems = check_tree(root)
    for line in problems:
        print(line)
    subjects = subject_versions(root)
    pairs = sum(max(0, len(v) - 1) for v in subjects.values())
    print(
        f"{len(subjects)} subjects, {pairs} version pairs, {len(problems)} incompatibilities", file=sys.stderr
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
