"""Liveness and readiness: one HTTP port serves /metrics, /healthz and /readyz.

Liveness means "the processing loop is still polling": every poll stamps a time (and,
arroyo-style, touches a file for exec probes). /healthz fails when that stamp is older
than `max_poll_age_s`, so a hung loop gets its pod restarted even though the process and
its HTTP thread are alive.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


class Health:
    def __init__(self, *, liveness_file: Path | None = None, max_poll_age_s: float = 60.0) -> None:
        self._liveness_file = liveness_file
        self._max_poll_age_s = max_poll_age_s
        self._last_poll = time.monotonic()
        self._last_touch = 0.0
        self._ready = False

    def polled(self) -> None:
        """Called by the loop on every poll."""
        now = time.monotonic()
        self._last_poll = now
        if self._liveness_file is not None and now - self._last_touch >= 1.0:
            self._liveness_file.touch()
            self._last_touch = now

    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    @property
    def live(self) -> bool:
        return time.monotonic() - self._last_poll <= self._max_poll_age_s

    @property
    def ready(self) -> bool:
        return self._ready and self.live


def liveness_file_fresh(path: Path, max_age_s: float) -> bool:
    """For exec probes: the liveness file exists and was touched within `max_age_s`."""
    try:
        return time.time() - path.stat().st_mtime <= max_age_s
    except OSError:
        return False


class _Handler(BaseHTTPRequestHandler):
    health: Health

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif self.path.startswith("/healthz"):
            ok = self.health.live
            self._send(200 if ok else 503, b"ok\n" if ok else b"poll loop stalled\n")
        elif self.path.startswith("/readyz"):
            ok = self.health.ready
            self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
        else:
            self._send(404, b"not found\n")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def serve(health: Health, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Start the metrics/health server on a daemon thread; port 0 picks a free port."""
    handler = type("Handler", (_Handler,), {"health": health})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
