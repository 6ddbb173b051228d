"""The schemas/ directory: ids, locked versions, README, and every version pair compatible.

The tests walk the directory, so a v2 added later is checked without touching this file.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import fastavro
import pytest

from facestream import codec
from facestream.schema_compat import check_backward, check_tree, digest, subject_versions
from facestream.transport import topics

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
INDEX = json.loads((SCHEMAS / "index.json").read_text())
SUBJECTS = subject_versions(SCHEMAS)
WITHOUT_SUBJECT = {
    "audit": "canonical JSON: the hash chain signs those exact bytes",
}
"""Topics that carry no Avro subject, each with its reason (README says the same)."""

SUBJECT_OF = {"alerts.confirmed": "alerts", "episodes.ended": "episodes"}
"""Topics whose subject is named differently from the topic."""


def test_every_schema_file_has_exactly_one_id_and_every_id_a_file() -> None:
    on_disk = sorted(str(p.relative_to(SCHEMAS)) for paths in SUBJECTS.values() for p in paths)
    indexed = list(INDEX["schemas"].values())
    assert sorted(indexed) == on_disk
    assert len(set(indexed)) == len(indexed)
    assert all(0 < int(k) < 2**31 for k in INDEX["schemas"])


def test_the_installed_schemas_are_these() -> None:
    assert codec.BUILTIN.index == {int(k): v for k, v in INDEX["schemas"].items()}


def test_every_data_topic_has_a_subject() -> None:
    data_topics = {t.name for t in topics.CATALOGUE if not t.name.startswith("dlq.")}
    missing = {t for t in data_topics if SUBJECT_OF.get(t, t) not in SUBJECTS}
    assert missing == set(WITHOUT_SUBJECT) & data_topics, f"topics without a schema: {missing}"
    assert set(WITHOUT_SUBJECT).isdisjoint(SUBJECTS), "a topic got its subject: drop it from WITHOUT_SUBJECT"


@pytest.mark.parametrize("schema_id", list(INDEX["schemas"]))
def test_published_versions_are_never_edited(schema_id: str) -> None:
    path = SCHEMAS / INDEX["schemas"][schema_id]
    schema = json.loads(path.read_text())
    fastavro.parse_schema(schema)  # valid Avro
    assert INDEX["sha256"].get(schema_id) == digest(schema), (
        f"{path.relative_to(SCHEMAS)} differs from the published version: add a new version instead "
        f"(a new file's digest is {digest(schema)})"
    )


def test_every_version_reads_itself_and_every_older_version() -> None:
    # consecutive pairs are BACKWARD; decode() reads any known version into the newest
    # type, so every older version is checked against every newer one (transitive)
    checked = 0
    for subject, paths in SUBJECTS.items():
        for old, new in itertools.combinations_with_replacement(paths, 2):
            problems = check_backward(json.loads(new.read_text()), json.loads(old.read_text()))
            assert not problems, f"{subject} {new.name} reading {old.name}: " + "; ".join(map(str, problems))
            checked += 1
    assert checked >= len(INDEX["schemas"])


def test_the_tree_check_passes_and_numbers_versions_without_gaps() -> None:
    assert check_tree(SCHEMAS) == []
    assert set(SUBJECTS) >= {"cameras", "frames", "faces", "embeddings", "hits", "matches"}
    for paths in SUBJECTS.values():
        assert [p.name for p in paths] == [f"v{i}.avsc" for i in range(1, len(paths) + 1)]


def test_readme_has_a_section_per_subject_naming_every_field() -> None:
    readme = (SCHEMAS / "README.md").read_text()
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", readme, re.M | re.S))
    assert set(SUBJECTS) <= set(sections)
    for subject, paths in SUBJECTS.items():
        schema = json.loads(paths[-1].read_text())
        for field in schema["fields"]:
            assert f"`{field['name']}`" in sections[subject], f"README {subject}: field {field['name']}"
        assert "key" in sections[subject].lower() and "retention" in sections[subject].lower()
