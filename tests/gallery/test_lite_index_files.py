"""A Milvus Lite gallery whose index files a killed process left half-written opens with all its entries.

Milvus Lite writes each segment's index file in place, from a thread, after a flush, and loads an
existing one as it is: cut short by a kill, it kept the collection from ever loading again. Each
test cuts the files as such a kill leaves them (a prefix) and opens the gallery again.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from facestream.errors import GalleryUnavailable
from facestream.gallery.lite_server import rebuild_unloadable_indexes
from facestream.gallery.lite_sidecars import index_sidecars, remove_index_sidecars
from facestream.gallery.store import FOREVER_MS, Gallery
from facestream.settings import GallerySettings
from tests.fixtures.milvus import synthetic_entries
from tests.fixtures.reliability import MilvusServer

COLLECTION = GallerySettings().collection
COUNT = 60


def _vectors() -> npt.NDArray[np.float32]:
    return np.random.default_rng(3).normal(size=(COUNT, 8)).astype(np.float32)


def _fill(gallery: Gallery, vectors: npt.NDArray[np.float32]) -> None:
    half = COUNT // 2  # two authorisations: two partitions, each with its index file
    gallery.add(synthetic_entries(half, "AUTH-A", FOREVER_MS, "a"), vectors[:half])
    gallery.add(synthetic_entries(COUNT - half, "AUTH-B", FOREVER_MS, "b"), vectors[half:])


def _cut(data_dir: Path, wait_s: float = 30) -> dict[Path, int]:
    """Cut every index file of the gallery's collection to half, once Lite has written them all;
    their sizes after the cut."""
    deadline = time.monotonic() + wait_s
    while len(files := index_sidecars(data_dir, COLLECTION)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # written by Lite's thread after the flush
    assert len(files) >= 2, files
    for f in files:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return {f: f.stat().st_size for f in files}


def _assert_whole(gallery: Gallery, vectors: npt.NDArray[np.float32]) -> None:
    assert gallery.count() == COUNT
    for i in (0, COUNT // 2, COUNT - 1):
        (hits,) = gallery.search(vectors[i : i + 1], model_id="model-s", threshold=0.99, top_k=1)
        assert [h.entry_id for h in hits] == [f"a{i}" if i < COUNT // 2 else f"b{i - COUNT // 2}"]


def test_an_embedded_gallery_rebuilds_index_files_cut_short(tmp_path: Path) -> None:
    vectors = _vectors()
    gallery = Gallery(GallerySettings(gallery=str(tmp_path)), dim=8)
    try:
        _fill(gallery, vectors)
    finally:
        gallery.close()
    cut = _cut(tmp_path / "milvus.db")

    gallery = Gallery(GallerySettings(gallery=str(tmp_path)), dim=8)
    try:
        _assert_whole(gallery, vectors)
    finally:
        gallery.close()
    assert all(f.stat().st_size > size for f, size in cut.items())  # written again, whole


def test_removing_index_files_leaves_the_data_and_other_collections(tmp_path: Path) -> None:
    database = tmp_path / "milvus.db"
    for collection in (COLLECTION, "other"):
        gallery = Gallery(GallerySettings(gallery=str(tmp_path), collection=collection), dim=8)
        try:
            _fill(gallery, _vectors())
        finally:
            gallery.close()
    assert len(index_sidecars(database, "other")) >= 2
    data = sorted(p for p in database.rglob("*.parquet"))

    assert remove_index_sidecars(database, COLLECTION) >= 2
    assert index_sidecars(database, COLLECTION) == []
    assert len(index_sidecars(database, "other")) >= 2
    assert sorted(p for p in database.rglob("*.parquet")) == data
    assert remove_index_sidecars(database, "no-such-collection") == 0


def test_the_gallery_pod_rebuilds_index_files_a_killed_server_cut_short(milvus_server: MilvusServer) -> None:
    """The chart's gallery pod (`facestream gallery serve-lite`) killed right after a write: without
    the check at its start, no client could load the collection again (the next test)."""
    vectors = _vectors()
    gallery = Gallery(GallerySettings(gallery=milvus_server.uri), dim=8)
    try:
        _fill(gallery, vectors)
    finally:
        gallery.close()
    _cut(milvus_server.data_dir)  # Lite wrote them after the flush: cut as a kill mid-write leaves them
    milvus_server.kill()

    milvus_server.start()
    gallery = Gallery(GallerySettings(gallery=milvus_server.uri), dim=8)
    try:
        _assert_whole(gallery, vectors)
    finally:
        gallery.close()
    assert f"collection {COLLECTION} did not load from its index files" in milvus_server.log_path.read_text()


def test_a_data_directory_that_loads_is_left_as_it_is(tmp_path: Path) -> None:
    gallery = Gallery(GallerySettings(gallery=str(tmp_path)), dim=8)
    try:
        _fill(gallery, _vectors())
    finally:
        gallery.close()
    database = tmp_path / "milvus.db"
    before = {f: f.stat().st_mtime_ns for f in index_sidecars(database, COLLECTION)}
    assert rebuild_unloadable_indexes(database) == []
    assert {f: f.stat().st_mtime_ns for f in index_sidecars(database, COLLECTION)} == before

    _cut(database)
    assert rebuild_unloadable_indexes(database) == [COLLECTION]


def test_a_server_gallery_that_cannot_load_says_why(milvus_server: MilvusServer) -> None:
    """A client cannot repair a server's files: it fails with the server's reason (and
    docs/operations.md says what to do), rather than removing anything."""
    gallery = Gallery(GallerySettings(gallery=milvus_server.uri), dim=8)
    try:
        _fill(gallery, _vectors())
    finally:
        gallery.close()
    _cut(milvus_server.data_dir)
    milvus_server.kill()
    milvus_server.start(check=False)  # `milvus-lite server` itself, as the chart ran it before
    with pytest.raises(GalleryUnavailable, match="not fully written"):
        Gallery(GallerySettings(gallery=milvus_server.uri), dim=8)
