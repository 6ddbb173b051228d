"""Milvus Lite's index files, rebuilt when a killed process left one half-written.

Why: Milvus Lite (3.2.2, embedded) keeps each segment's vector index in a sidecar file beside the
segment's data, written in place (open, then write) by a background thread after every flush, and
read back, as it is, by every later load. A process killed during that write (a matcher evicted
just after an enrollment or a removal) leaves a truncated sidecar, and the collection never loaded
again: `load_collection` failed with "file seems not fully written?" on every start, and the
matcher could not open its gallery (found by tests/accountability/test_purge.py killing a removal).

A sidecar holds nothing the segment does not: Lite commits a segment's data file by replacing its
manifest atomically, and builds the index from that data when no sidecar exists. So a collection
that fails to load loses nothing when its sidecars are removed, and the next load rebuilds them
(a copy for FLAT; minutes for HNSW at a million rows, which is why this runs only after a load
failed, not on every start).

Only for a database this process owns: embedded Lite, whose directory the Gallery holds, and the
chart's gallery pod before it serves (gallery/lite_server.py). A client of a `milvus-lite server`
cannot reach its files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def index_sidecars(database: Path, collection: str) -> list[Path]:
    """The index files of one collection of an embedded Milvus Lite database (`.../milvus.db`), in
    the layout Milvus Lite 3.2.2 writes: collections/<name>/partitions/<partition>/indexes/."""
    partitions = database / "collections" / collection / "partitions"
    return sorted(p for p in partitions.glob("*/indexes/*") if p.is_file())


def remove_index_sidecars(database: Path, collection: str) -> int:
    """Remove a collection's index files so that its next load rebuilds them; how many were removed
    (0 when there were none, or Lite's layout is not the one this knows)."""
    sidecars = index_sidecars(database, collection)
    for sidecar in sidecars:
        sidecar.unlink(missing_ok=True)
    return len(sidecars)


def load_rebuilding_index(
    load: Callable[[], object], database: Path, collection: str, failure: type[Exception]
) -> bool:
    """Run `load` (of `collection`); when it raises `failure`, remove the collection's index files
    and run it again, which rebuilds them. True when they were rebuilt. The first failure is
    raised again when there were no index files to remove; a second failure is raised as is."""
    try:
        load()
        return False
    except failure as exc:
        if not remove_index_sidecars(database, collection):
            raise
        log.warning(
            "gallery: collection %s did not load from its index files (%s); they were removed and "
            "are rebuilt from its data",
            collection,
            exc,
        )
    load()
    return True
