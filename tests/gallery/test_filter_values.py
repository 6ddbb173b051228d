"""Every string that reaches a Milvus filter, on Milvus Lite and on a real 2.3 server (HNSW).

The filter-reaching values are a search's model id and authorisation ids, `entries_of`'s identity,
`entries_of_authorisation`'s and `remove_authorisation`'s authorisation id, and `remove_entries`'
entry ids. For any text in any of them the gallery either refuses it with a one-line ConfigError
before Milvus sees it, or takes it literally: the answer is exactly the entries whose field equals
it, nothing is removed that should not be, and Milvus never fails to parse the filter.

The first test is the measurement behind the design (store.py, "Values in filters"): the two
backends read the same escape differently, so the gallery quotes ids from an alphabet instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from facestream.errors import ConfigError
from facestream.gallery.store import (
    FOREVER_MS,
    Gallery,
    GalleryEntry,
    GalleryHit,
    filter_value_problem,
    identity_problem,
)
from tests.fixtures.milvus import BOTH_BACKENDS, GalleryBackend
from tests.fuzz.strategies import fuzz

T = TypeVar("T")
NO_HITS: list[list[GalleryHit]] = [[]]
NO_ENTRIES: list[GalleryEntry] = []
DIM = 8
MODEL_A, MODEL_B = "model-a@000000000001", "model-b@000000000002"
AUTH_A, AUTH_B = "auth_aaaaaaaaaaaaaaaa", "auth_bbbbbbbbbbbbbbbb"
SEEDS = [
    GalleryEntry("e1", "Zoë O'Brien", AUTH_A, MODEL_A, "p1", 0, FOREVER_MS),
    GalleryEntry("e2", "李小龍", AUTH_B, MODEL_B, "p2", 0, FOREVER_MS),
    GalleryEntry("e3", "plain", AUTH_B, MODEL_A, "p3", 0, FOREVER_MS),
]
INJECTIONS = [
    'x" or model_id != "',
    '" or entry_id != "',
    f'{AUTH_A}", "{AUTH_B}',
    f"{MODEL_A}\\",
    f'{MODEL_A}\\" or model_id != \\"',
    "' or 1 == 1 or '",
    "plain\n",
    'plain" or identity != "',
    "x\\u0041",
]

hostile = st.one_of(
    st.sampled_from(INJECTIONS + [e.model_id for e in SEEDS] + [e.authorisation_id for e in SEEDS]),
    st.sampled_from([e.identity for e in SEEDS] + [e.entry_id for e in SEEDS]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    st.from_regex(r"[A-Za-z0-9_.@:\-]{0,30}", fullmatch=True),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(100, 5_000)),
)


def examples(backend: GalleryBackend, lite: int, server: int) -> settings:
    """Fewer examples on the server: each mutation there waits for a Strong read (~0.2 s)."""
    return fuzz(server if backend.is_server else lite)


def unit(seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def seeded(gallery_backend: GalleryBackend) -> Iterator[Gallery]:
    """SEEDS, all stored with one vector, so a search for it finds every entry its filter lets through."""
    gallery = Gallery(gallery_backend.settings(), dim=DIM)
    gallery.add(SEEDS, np.stack([unit(0)] * len(SEEDS)))
    yield gallery
    gallery.close()


def refused_or(problem: str | None, call: Callable[[], T], refused: T) -> T:
    """ConfigError (one line) exactly when the value has a problem, then `refused`; else the answer."""
    if problem is None:
        return call()
    with pytest.raises(ConfigError) as error:
        call()
    assert "\n" not in str(error.value) and "cannot be used in a gallery filter" in str(error.value)
    return refused


def ids(entries: list[GalleryEntry]) -> list[str]:
    return sorted(e.entry_id for e in entries)


@BOTH_BACKENDS
def test_the_backends_read_escapes_differently(gallery_backend: GalleryBackend) -> None:
    """Why store.py quotes from an alphabet: one escaped literal, two readings (and a third
    reading, the raw one, of a value with a backslash in it)."""
    if not gallery_backend.is_server:
        Path(gallery_backend.location).mkdir(parents=True)
    client: MilvusClient = gallery_backend.client()
    name = gallery_backend.collection
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=8)
    schema.add_field("m", DataType.VARCHAR, max_length=16)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", index_type="FLAT", metric_type="COSINE")
    client.create_collection(name, schema=schema, index_params=index)
    try:
        client.insert(
            name, [{"id": "1", "m": "xA", "v": [1.0, 0.0]}, {"id": "2", "m": 'a"b', "v": [1.0, 0.0]}]
        )
        client.flush(name)

        def found(expr: str) -> list[str]:
            return [
                r["id"]
                for r in client.query(name, filter=expr, output_fields=["id"], consistency_level="Strong")
            ]

        if gallery_backend.is_server:
            assert found('m == "x\\u0041"') == ["1"]  # decoded, as Go's strconv does
        else:
            with pytest.raises(MilvusException, match="unknown escape sequence"):
                found('m == "x\\u0041"')
        # The raw quoting an escaper would replace: a backslash in the value changes what it names.
        assert found('m == "a\\"b"') == ["2"]
    finally:
        client.drop_collection(name)
        client.close()


@BOTH_BACKENDS
def test_any_value_in_any_filter_is_refused_or_taken_literally(
    seeded: Gallery, gallery_backend: GalleryBackend
) -> None:
    @given(hostile)
    @examples(gallery_backend, lite=200, server=30)
    def holds(value: str) -> None:
        problem = filter_value_problem(value)
        vector = unit(0)[None]
        [hits] = refused_or(
            problem, lambda: seeded.search(vector, model_id=value, threshold=0.5, top_k=5), NO_HITS
        )
        assert sorted(h.entry_id for h in hits) == [e.entry_id for e in SEEDS if e.model_id == value]
        [scoped] = refused_or(
            problem,
            lambda: seeded.search(
                vector, model_id=MODEL_A, threshold=0.5, top_k=5, authorisation_ids=[value, "auth_none"]
            ),
            NO_HITS,
        )
        assert sorted(h.entry_id for h in scoped) == [
            e.entry_id for e in SEEDS if e.model_id == MODEL_A and e.authorisation_id == value
        ]
        of_auth = refused_or(problem, lambda: seeded.entries_of_authorisation(value), NO_ENTRIES)
        assert ids(of_auth) == [e.entry_id for e in SEEDS if e.authorisation_id == value]
        of_identity = refused_or(identity_problem(value), lambda: seeded.entries_of(value), NO_ENTRIES)
        assert ids(of_identity) == [e.entry_id for e in SEEDS if e.identity == value]
        if value not in {e.entry_id for e in SEEDS}:
            assert refused_or(problem, lambda: seeded.remove_entries([value]), NO_ENTRIES) == []
        if value not in {e.authorisation_id for e in SEEDS}:
            assert refused_or(problem, lambda: seeded.remove_authorisation(value), 0) == 0
        assert ids(seeded.entries()) == ["e1", "e2", "e3"]

    holds()


@BOTH_BACKENDS
def test_any_identity_the_gallery_takes_is_found_and_removed_by_exactly_that_identity(
    seeded: Gallery, gallery_backend: GalleryBackend
) -> None:
    """Identities are the one free-text value in a filter (quoted as they are, any script)."""

    wide = st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(200, 256))

    @given(st.one_of(hostile, wide))
    @examples(gallery_backend, lite=150, server=20)
    def holds(identity: str) -> None:
        entry = GalleryEntry("e-new", identity, AUTH_A, MODEL_A, "p", 0, FOREVER_MS)
        if identity_problem(identity) is not None:
            refused_or(identity_problem(identity), lambda: seeded.add([entry], unit(1)[None]), None)
            assert ids(seeded.entries()) == ["e1", "e2", "e3"]
            return
        seeded.add([entry], unit(1)[None])
        expected = ["e-new"] + [e.entry_id for e in SEEDS if e.identity == identity]
        assert ids(seeded.entries_of(identity)) == sorted(expected)
        assert ids(seeded.remove_entries(["e-new"])) == ["e-new"]
        assert ids(seeded.entries()) == ["e1", "e2", "e3"]

    holds()


@pytest.mark.parametrize(
    "field, value",
    [
        ("model_id", "arcface r50 (licensed)@87aacdfe5751"),
        ("model_id", "m" * 129),
        ("authorisation_id", 'a" or "1'),
        ("entry_id", "e 1"),
        ("identity", 'Barack "the" Obama'),
        ("identity", "line\nbreak"),
    ],
)
def test_add_refuses_an_entry_no_filter_could_name_and_stores_nothing(
    gallery_backend: GalleryBackend, field: str, value: str
) -> None:
    """Such an entry could never be searched, listed by identity, or purged by its authorisation."""
    gallery = Gallery(gallery_backend.settings(), dim=DIM)
    try:
        good = SEEDS[0]
        bad = GalleryEntry(**{**dataclasses.asdict(good), "entry_id": "e9", field: value})
        with pytest.raises(ConfigError, match="cannot be used in a gallery filter"):
            gallery.add([good, bad], np.stack([unit(0), unit(1)]))
        assert gallery.count() == 0
    finally:
        gallery.close()
