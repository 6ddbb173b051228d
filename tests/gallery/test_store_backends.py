"""The gallery store holds the same on Milvus Lite and on a real Milvus server (HNSW): what is
written is searched, listed and counted at once, and what is removed is gone at once from all
three. On the server that took settling every write (store.py: a Bounded search just after a
delete still found the deleted entry, and the collection's row count never dropped)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from facestream.gallery.enroll import Enroller
from facestream.gallery.store import COLLECTION_NOT_LOADED, FOREVER_MS, QUERY_LIMIT, Gallery, GalleryEntry
from facestream.settings import MatcherSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.media import vector_of
from tests.fixtures.milvus import BOTH_BACKENDS, GalleryBackend, synthetic_entries

THRESHOLD = MatcherSettings().match_threshold
WANTED, MISSING = "AUTH-WANTED", "AUTH-MISSING"


@pytest.fixture
def gallery(gallery_backend: GalleryBackend, embedder: FaceEmbedder) -> Iterator[Gallery]:
    store = Gallery(gallery_backend.settings(), dim=embedder.dim)
    yield store
    store.close()


@dataclass(frozen=True)
class Probes:
    """Photos of the enrolled people that were not enrolled themselves."""

    obama: npt.NDArray[np.float32]
    biden: npt.NDArray[np.float32]
    rose: npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def probes(finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path) -> Probes:
    return Probes(
        obama=vector_of(finder, embedder, faces_dir / "probe" / "obama.jpg"),
        biden=vector_of(finder, embedder, faces_dir / "enroll" / "biden_2.jpg"),
        rose=vector_of(finder, embedder, faces_dir / "enroll" / "rose_leslie_2.jpg"),
    )


def found(
    gallery: Gallery,
    vector: npt.NDArray[np.float32],
    model_id: str,
    authorisation_ids: Sequence[str] | None = None,
) -> list[str]:
    """The identities a face matches now."""
    (hits,) = gallery.search(
        vector, model_id=model_id, threshold=THRESHOLD, top_k=3, authorisation_ids=authorisation_ids
    )
    return sorted({h.identity for h in hits})


@BOTH_BACKENDS
def test_enrolled_entries_are_found_and_removed_ones_are_gone_at_once(
    gallery: Gallery, finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path, probes: Probes
) -> None:
    enroller = Enroller(finder, embedder, gallery, gallery.settings)
    enroll = faces_dir / "enroll"
    enroller.enroll("obama", [enroll / "obama_1.jpg", enroll / "obama_2.jpg"], authorisation_id=WANTED)
    enroller.enroll("biden", [enroll / "biden_1.jpg"], authorisation_id=MISSING)
    enroller.enroll("rose_leslie", [enroll / "rose_leslie_1.jpg"], authorisation_id=MISSING)
    model = embedder.model_id

    assert gallery.count() == 4
    assert [e.identity for e in gallery.entries()] == ["biden", "obama", "obama", "rose_leslie"]
    assert [e.identity for e in gallery.entries_of_authorisation(WANTED)] == ["obama", "obama"]
    assert found(gallery, probes.obama, model) == ["obama"]
    assert found(gallery, probes.obama, model, authorisation_ids=[WANTED]) == ["obama"]
    assert found(gallery, probes.obama, model, authorisation_ids=[MISSING]) == []
    assert found(gallery, probes.rose, model) == ["rose_leslie"]

    assert gallery.remove_identity("rose_leslie") == 1
    assert found(gallery, probes.rose, model) == []
    assert gallery.count() == 3
    assert [e.identity for e in gallery.entries_of_authorisation(MISSING)] == ["biden"]

    assert gallery.remove_authorisation(WANTED) == 2
    assert found(gallery, probes.obama, model) == []
    assert gallery.entries_of_authorisation(WANTED) == []
    assert gallery.count() == 1
    assert found(gallery, probes.biden, model) == ["biden"]  # the other partition is still searched
    assert gallery.remove_authorisation(WANTED) == 0

    # An authorisation whose partition was dropped can hold entries again (a re-grant, a re-embed).
    enroller.enroll("obama", [enroll / "obama_1.jpg"], authorisation_id=WANTED)
    assert found(gallery, probes.obama, model, authorisation_ids=[WANTED]) == ["obama"]
    assert gallery.count() == 2


def remove_expired(gallery: Gallery, now_ms: int) -> list[GalleryEntry]:
    """What the purge's sweep does, without its erasure record (accountability/erasures.py)."""
    return gallery.remove_entries([e.entry_id for e in gallery.expired(now_ms)])


@BOTH_BACKENDS
def test_expired_entries_are_those_whose_validity_has_ended_and_are_erased_for_good(
    gallery: Gallery, finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path, probes: Probes
) -> None:
    ends = int(time.time() * 1000) + 3_600_000
    enroller = Enroller(finder, embedder, gallery, gallery.settings)
    enroller.enroll("obama", [faces_dir / "enroll" / "obama_1.jpg"], valid_until_ms=ends)
    enroller.enroll("biden", [faces_dir / "enroll" / "biden_1.jpg"])  # valid forever

    assert remove_expired(gallery, ends - 1) == []
    (gone,) = remove_expired(gallery, ends)
    assert (gone.identity, gone.valid_until_ms) == ("obama", ends)
    assert [e.identity for e in gallery.entries()] == ["biden"]
    assert gallery.count() == 1
    # removed, not only filtered: searched as of a time it was still valid, it is not there
    (hits,) = gallery.search(probes.obama, model_id=embedder.model_id, threshold=THRESHOLD, top_k=3, now_ms=0)
    assert hits == []
    assert remove_expired(gallery, ends + 1) == []


@BOTH_BACKENDS
@pytest.mark.slow  # about 11 s: more entries than one query returns
def test_more_entries_than_one_query_returns_are_all_listed_and_expired(
    gallery_backend: GalleryBackend,
) -> None:
    """One query returns at most QUERY_LIMIT rows; the listing, and the purges built on it, must not
    stop there."""
    big, small = QUERY_LIMIT + 16, 100
    gallery = Gallery(gallery_backend.settings(), dim=8)
    try:
        vectors = np.random.default_rng(7).normal(size=(big + small, 8)).astype(np.float32)
        gallery.add(synthetic_entries(big, "AUTH-BIG", 1_000, "b"), vectors[:big])
        gallery.add(synthetic_entries(small, "AUTH-SMALL", FOREVER_MS, "s"), vectors[big:])

        listed = gallery.entries()
        assert len(listed) == len({e.entry_id for e in listed}) == big + small
        assert gallery.count() == big + small
        assert len(gallery.entries_of_authorisation("AUTH-BIG")) == big

        assert len(remove_expired(gallery, now_ms=1_000)) == big
        assert gallery.count() == small
        assert {e.authorisation_id for e in gallery.entries()} == {"AUTH-SMALL"}
    finally:
        gallery.close()


@BOTH_BACKENDS
def test_adding_again_keeps_one_entry_per_id_and_large_adds_are_written_whole(
    gallery_backend: GalleryBackend,
) -> None:
    """New entries are inserted and stored ones upserted (store.py `_write`): however an add mixes
    them, and however many rows one add carries (more than one write call holds), every entry id is
    stored once, with what was added last."""
    first, more = 9_000, 20  # first: over one write call (8192 rows), into a new partition
    gallery = Gallery(gallery_backend.settings(), dim=8)
    try:
        vectors = np.random.default_rng(11).normal(size=(first + more, 8)).astype(np.float32)
        entries = synthetic_entries(first + more, "AUTH-A", FOREVER_MS, "e")
        gallery.add(entries[:first], vectors[:first])
        assert gallery.count() == first

        # the last 10 stored entries again, renamed, 10 new ones, and one new entry given twice
        again = [
            dataclasses.replace(e, identity=f"renamed-{e.entry_id}") for e in entries[first - 10 : first]
        ]
        batch = [*again, *entries[first : first + 10], entries[first + 10], entries[first + 10]]
        gallery.add(batch, vectors[first - 10 : first + 12])

        listed = gallery.entries()
        assert len(listed) == len({e.entry_id for e in listed}) == first + 11
        assert gallery.count() == first + 11
        renamed = sorted(e.identity for e in listed if e.identity.startswith("renamed-"))
        assert renamed == sorted(e.identity for e in again)
        assert not {e.identity for e in entries[first - 10 : first]} & {e.identity for e in listed}
    finally:
        gallery.close()


PARTITION_ROWS = 1100
"""Milvus builds a segment's index only from 1024 rows; smaller segments are searched exactly."""


def wait_until_searched_on_the_index(client: MilvusClient, collection: str, rows: int) -> None:
    """Until every row sits in a sealed segment the query node has loaded with its index (the
    handoff from the growing segment took ~15 s here after the flush)."""
    deadline = time.monotonic() + 180
    while True:
        loaded = client.list_loaded_segments(collection)
        if sum(s.num_rows for s in loaded if s.index_name == "vector") >= rows:
            return
        assert time.monotonic() < deadline, f"segments never loaded with their index: {loaded}"
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.parametrize("gallery_backend", ["server"], indirect=True)
def test_the_server_searches_its_hnsw_index_through_the_filter(
    gallery_backend: GalleryBackend,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    probes: Probes,
) -> None:
    """Each authorisation gets a partition of PARTITION_ROWS entries written at once, so every
    search below runs on HNSW graphs, with the model, validity and authorisation filter applied
    inside them. Exact copies of Obama's enrolled vector under another model, an ended validity
    and another authorisation sit in those graphs, and only the filter keeps them out."""
    model, now = embedder.model_id, int(time.time() * 1000)
    # The shipped HNSW settings. With M 8, efConstruction 64 and ef 32 the graph over the random
    # filler missed obama-1 in about 1 run of 10 (CI at 3e441db, 1 of 5 here): an approximate
    # search's miss, which says nothing about the filter this test is about.
    settings = gallery_backend.settings(hnsw_m=32, hnsw_ef_construction=100, search_ef=128)
    gallery = Gallery(settings, dim=embedder.dim)
    client = gallery_backend.client()
    try:
        enroll = faces_dir / "enroll"
        obama_1 = vector_of(finder, embedder, enroll / "obama_1.jpg")
        obama_2 = vector_of(finder, embedder, enroll / "obama_2.jpg")
        biden = vector_of(finder, embedder, enroll / "biden_1.jpg")
        noise = np.random.default_rng(11).normal(size=(2 * PARTITION_ROWS, embedder.dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)

        def entry(entry_id: str, auth: str, model_id: str = model, until: int = FOREVER_MS) -> GalleryEntry:
            return GalleryEntry(entry_id, entry_id.split("-")[0], auth, model_id, entry_id, now, until)

        wanted = [
            entry("obama-1", WANTED),
            entry("obama-2", WANTED),
            entry("copy-other-model", WANTED, model_id="another-model@000000000000"),
            entry("copy-ended", WANTED, until=now),
        ]
        missing = [entry("biden-1", MISSING), entry("copy-missing", MISSING)]
        fill_w, fill_m = PARTITION_ROWS - len(wanted), PARTITION_ROWS - len(missing)
        gallery.add(
            wanted + synthetic_entries(fill_w, WANTED, FOREVER_MS, "w", model),
            np.concatenate([obama_1, obama_2, obama_1, obama_1, noise[:fill_w]]),
        )
        gallery.add(
            missing + synthetic_entries(fill_m, MISSING, FOREVER_MS, "m", model),
            np.concatenate([biden, obama_1, noise[fill_w : fill_w + fill_m]]),
        )
        index = client.describe_index(gallery.collection, "vector")
        assert (index["index_type"], int(index["M"]), int(index["efConstruction"])) == ("HNSW", 32, 100)
        wait_until_searched_on_the_index(client, gallery.collection, 2 * PARTITION_ROWS)

        def entry_ids(top_k: int, at_ms: int, authorisation_ids: list[str] | None) -> list[str]:
            (hits,) = gallery.search(
                probes.obama,
                model_id=model,
                threshold=THRESHOLD,
                top_k=top_k,
                now_ms=at_ms,
                authorisation_ids=authorisation_ids,
            )
            return sorted(h.entry_id for h in hits)

        assert entry_ids(3, now, [WANTED]) == ["obama-1", "obama-2"]
        assert entry_ids(3, now, None) == ["copy-missing", "obama-1", "obama-2"]
        assert entry_ids(3, now - 1, [WANTED]) == ["copy-ended", "obama-1", "obama-2"]  # still valid then
        assert entry_ids(200, now, [WANTED]) == ["obama-1", "obama-2"]  # top_k above search_ef: ef raised
        assert found(gallery, probes.biden, model, authorisation_ids=[MISSING]) == ["biden"]
        assert found(gallery, probes.biden, model, authorisation_ids=[WANTED]) == []
    finally:
        client.close()
        gallery.close()


@BOTH_BACKENDS
def test_a_released_collection_is_loaded_again_by_the_next_search(
    gallery: Gallery, gallery_backend: GalleryBackend, probes: Probes, embedder: FaceEmbedder
) -> None:
    """A released collection cannot be searched (a server restart, or an operator rebuilding the
    index, releases it); the gallery loads it and asks again. It knows the refusal by its error code,
    the same on both backends though their messages differ."""
    gallery.add(
        [GalleryEntry("obama-probe", "obama", WANTED, embedder.model_id, "p", 1, FOREVER_MS)], probes.obama
    )
    operator = gallery_backend.client()
    try:
        operator.release_collection(gallery.collection)
        assert str(operator.get_load_state(gallery.collection)["state"]) == "NotLoad"
        with pytest.raises(MilvusException) as refused:
            operator.search(gallery.collection, data=[probes.obama[0].tolist()], limit=1)
        assert refused.value.code == COLLECTION_NOT_LOADED, refused.value
        assert found(gallery, probes.obama, embedder.model_id) == ["obama"]
        assert str(operator.get_load_state(gallery.collection)["state"]) == "Loaded"
    finally:
        operator.close()


def test_milvus_lite_leaves_grpc_logging_as_it_was_and_logs_no_traceback_through_it(
    gallery_backend: GalleryBackend, probes: Probes, embedder: FaceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating a collection makes pymilvus ask Lite's in-process gRPC server for an RPC it does not
    implement, and grpc logs that with a traceback; the gallery drops that record during the call
    only. Its whole life on Lite, from creating to purging, logs nothing through grpc, and grpc's
    logging is left as it was, for any other gRPC code in the process."""
    grpc_server = logging.getLogger("grpc._server")
    level, filters = grpc_server.level, list(grpc_server.filters)
    caplog.set_level(logging.DEBUG, logger="grpc")
    assert not gallery_backend.is_server  # the default backend: Milvus Lite, in this process
    gallery = Gallery(gallery_backend.settings(), dim=embedder.dim)
    try:
        gallery.add(
            [GalleryEntry("obama-probe", "obama", WANTED, embedder.model_id, "p", 1, FOREVER_MS)],
            probes.obama,
        )
        assert found(gallery, probes.obama, embedder.model_id) == ["obama"]
        assert gallery.remove_identity("obama") == 1
        assert gallery.entries() == []
    finally:
        gallery.close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("grpc")] == []
    assert (grpc_server.level, grpc_server.filters) == (level, filters)
    assert grpc_server.getEffectiveLevel() <= logging.ERROR
