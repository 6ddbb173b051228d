"""The chart's gallery pod: `milvus-lite server`, once every collection is known to load.

Why: a `milvus-lite server` killed while Milvus Lite wrote an index file (a pod evicted or OOM-killed
just after an enrollment; gallery/lite_sidecars.py) leaves a collection that no client can load,
and its clients, the matchers, cannot reach the server's files to repair them: every open failed
until someone removed the index files by hand. So the pod starts through `facestream gallery
serve-lite`: it opens the data directory itself, loads each collection, rebuilds the index files
of one that fails (removes them and loads again), closes the directory, and only then runs
Milvus Lite's own server on it. A collection that still fails is left as it is and named in the
log (the server starts; its clients report the same error).

Probes (`--health-port`, the chart's metricsPort): a rebuild takes as long as the gallery is big
(HNSW at a million entries: ~8 minutes here), and the gRPC port opens only after it. Probing that
port, as the chart first did, restarted a pod whose rebuild outlasted the startup probe, and the
restarted pod began the rebuild again: a large gallery never came back. So the pod answers
/healthz from its first second: alive while it rebuilds, then only while its gRPC port accepts
connections; /readyz only once that port accepts them (matchers are sent to it only then).
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

from milvus_lite import MilvusLite
from milvus_lite.adapter.grpc.server import run_server

from facestream.gallery.lite_sidecars import load_rebuilding_index
from facestream.runtime.health import Health
from facestream.runtime.health import serve as serve_health

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


class PodHealth:
    """The gallery pod's liveness and readiness, checked every `check_every_s` on a daemon thread.

    Before `serving()`: alive (the index check runs; it cannot report progress), not ready.
    After: alive and ready while the gRPC port accepts a connection; not ready at once when it does
    not, and not alive once it has not for `max_silence_s`."""

    def __init__(
        self, grpc_host: str, grpc_port: int, *, max_silence_s: float = 30.0, check_every_s: float = 2.0
    ) -> None:
        self.health = Health(max_poll_age_s=max_silence_s)
        self._grpc = ("127.0.0.1" if grpc_host in ("0.0.0.0", "") else grpc_host, grpc_port)
        self._check_every_s = check_every_s
        self._serving = threading.Event()
        self._stop = threading.Event()
        self._http: ThreadingHTTPServer | None = None

    def serving(self) -> None:
        """The index check is done; from now on the gRPC port must answer."""
        self._serving.set()
        self.check()

    def check(self) -> None:
        if not self._serving.is_set():
            self.health.polled()
            return
        try:
            socket.create_connection(self._grpc, timeout=min(2.0, self._check_every_s)).close()
        except OSError:
            self.health.set_ready(False)
            return
        self.health.set_ready(True)
        self.health.polled()

    def start(self, health_host: str, health_port: int) -> int:
        """Serve /healthz, /readyz and /metrics on `health_port` (0: a free one, returned)."""
        self._http = serve_health(self.health, health_port, health_host)
        threading.Thread(target=self._watch, name="gallery-probe", daemon=True).start()
        return int(self._http.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def _watch(self) -> None:
        while not self._stop.wait(self._check_every_s):
            self.check()


def serve(data_dir: Path, host: str, port: int, health_port: int | None = None) -> None:
    """Check the data directory, then run Milvus Lite's gRPC server on it until stopped; with
    `health_port`, the probes' endpoints from the start (PodHealth)."""
    health = None
    if health_port is not None:
        health = PodHealth(host, port)
        health.start(host, health_port)
    rebuild_unloadable_indexes(data_dir)
    if health is not None:
        health.serving()  # the port opens in run_server, within the liveness allowance
    run_server(str(data_dir), host=host, port=port)
