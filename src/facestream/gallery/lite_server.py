"""The chart's gallery pod: `milvus-lite server`, once every collection is known to load.

Why: a `milvus-lite server` killed while Milvus Lite wrote an index file (a pod evicted or OOM-killed
just after an enrollment; gallery/lite_sidecars.py) leaves a collection that no client can load,
and its clients, the matchers, cannot reach the server's files to repair them: every open failed
until someone removed the index files by hand. So the pod starts through `facestream gallery
serve-lite`: it opens the data directory itself, loads each collection, rebuilds the index files
of one that fails (removes them and loads again), closes the directory, and only then runs
Milvus Lite's own server on it. A collection that still fails is left as it is and named in the
log (the server starts; its clients report the same error).
"""

from __future__ import annotations

import logging
from pathlib import Path

from milvus_lite import MilvusLite
from milvus_lite.adapter.grpc.server import run_server

from facestream.gallery.lite_sidecars import load_rebuilding_index

log = logging.getLogger(__name__)


def rebuild_unloadable_indexes(data_dir: Path) -> list[str]:
    """Load every collection in a Milvus Lite data directory; the names of those whose index files
    had to be rebuilt. Needs the directory to itself (no server running on it)."""
    rebuilt = []
    db = MilvusLite(str(data_dir))
    try:
        for name in db.list_collections():
            collection = db.get_collection(name)
            try:
                # Lite raises what its index loader raised (ValueError, EOFError, ...)
                if load_rebuilding_index(collection.load, data_dir, name, Exception):
                    rebuilt.append(name)
            except Exception as exc:
                log.error("gallery: collection %s does not load: %s", name, exc)
    finally:
        db.close()
    return rebuilt


def serve(data_dir: Path, host: str, port: int) -> None:
    """Check the data directory, then run Milvus Lite's gRPC server on it until stopped."""
    rebuild_unloadable_indexes(data_dir)
    run_server(str(data_dir), host=host, port=port)
