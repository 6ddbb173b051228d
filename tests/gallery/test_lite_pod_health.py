"""The gallery pod's probes: alive while it checks and rebuilds index files, ready only once its
gRPC port accepts connections, not alive once that port has stopped accepting them.

Why: the chart probed the gRPC port itself, which opens only after the index check; a rebuild
longer than the startup probe (HNSW at a million entries: ~8 minutes) got the pod restarted, and
the restarted pod began the rebuild again. Real sockets and the real HTTP endpoints throughout.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from facestream.gallery.lite_server import PodHealth
from tests.fixtures.reliability import MilvusServer


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def grpc_port() -> Iterator[socket.socket]:
    """A port that accepts connections, as the gRPC server's does once it serves."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


def test_alive_but_not_ready_while_the_index_check_runs() -> None:
    """Before `serving()` the gRPC port (closed here) is not probed: a pod rebuilding for minutes
    stays up and gets no traffic."""
    health = PodHealth("127.0.0.1", _closed_port(), max_silence_s=0.5, check_every_s=0.1)
    http = health.start("127.0.0.1", 0)
    try:
        time.sleep(1.0)  # twice the silence allowed once serving
        assert (status(http, "/healthz"), status(http, "/readyz")) == (200, 503)
    finally:
        health.stop()


def test_ready_while_the_grpc_port_accepts_then_not_alive_once_it_stops(grpc_port: socket.socket) -> None:
    port = grpc_port.getsockname()[1]
    health = PodHealth("0.0.0.0", port, max_silence_s=0.6, check_every_s=0.1)  # the chart's host
    http = health.start("127.0.0.1", 0)
    try:
        health.serving()
        assert (status(http, "/healthz"), status(http, "/readyz")) == (200, 200)
        grpc_port.close()
        time.sleep(0.3)  # a few checks, under the silence allowed
        assert (status(http, "/healthz"), status(http, "/readyz")) == (200, 503)
        time.sleep(0.8)
        assert (status(http, "/healthz"), status(http, "/readyz")) == (503, 503)
    finally:
        health.stop()


def test_the_pods_command_serves_the_probes(milvus_server: MilvusServer) -> None:
    """`facestream gallery serve-lite --health-port` (the chart's command; the fixture waited for
    its /readyz): ready while serving, and /metrics answers for a scraper."""
    assert milvus_server.health_port is not None
    assert status(milvus_server.health_port, "/readyz") == 200
    assert status(milvus_server.health_port, "/healthz") == 200
    assert status(milvus_server.health_port, "/metrics") == 200


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
