"""MJPEG over HTTP (`multipart/x-mixed-replace`), the stream most IP cameras serve, read directly.

FFmpeg reads these streams too, but gives up on the first malformed part (junk between
parts ends its `mpjpeg` demuxer), while real cameras do emit partial frames and stray
bytes. This reader resynchronises on the next boundary instead, keeps each part as JPEG
bytes so that frames the sampler skips are never decoded, and uses plain socket timeouts,
so a stalled camera fails after exactly the stall timeout.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import socket
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote, urlsplit

from facestream.errors import CameraError

CHUNK = 64 * 1024
MAX_PART_BYTES = 32 * 1024 * 1024
"""A part larger than this is not a camera frame: it is skipped, and never held in memory whole."""
MAX_HEADER_BYTES = 16 * 1024
_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_HEADERS_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """Where to connect and how to authenticate, split from a URL (which may hold credentials)."""

    https: bool
    host: str
    port: int | None
    path: str
    authorization: str | None

    @classmethod
    def of(cls, url: str) -> HttpTarget:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise CameraError(f"bad URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CameraError("not an http(s) URL with a host")
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme == "https", parts.hostname, port, path, auth)


def open_mjpeg(url: str, timeout_s: float) -> MjpegReader | None:
    """GET `url`: a reader when it serves MJPEG, None for any other stream (left to FFmpeg).

    Raises CameraError when the camera cannot be reached or refuses the request.
    """
    target = HttpTarget.of(url)
    kind = http.client.HTTPSConnection if target.https else http.client.HTTPConnection
    connection = kind(target.host, target.port, timeout=timeout_s)
    headers = {"User-Agent": "facestream", "Accept": "multipart/x-mixed-replace, */*"}
    if target.authorization:
        headers["Authorization"] = target.authorization
    try:
        connection.request("GET", target.path, headers=headers)
        sock = connection.sock  # getresponse() hands it to the response and forgets it
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise CameraError(f"cannot connect: {type(exc).__name__}") from None
    challenge = response.getheader("WWW-Authenticate", "")
    if response.status == 401 and challenge.lower().startswith("digest"):
        response.close()
        return None  # FFmpeg answers digest challenges; plain Basic is all this reader does
    if response.status != 200:
        response.close()
        raise CameraError(f"HTTP {response.status} {response.reason}")
    message = Message()
    message["Content-Type"] = response.getheader("Content-Type", "")
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/x-mixed-replace" or not isinstance(boundary, str):
        response.close()
        return None
    return MjpegReader(sock, response, boundary)


class MjpegReader:
    """The parts of one multipart stream, in order; read and closed by one thread, interruptible from any."""

    def __init__(self, sock: socket.socket, response: http.client.HTTPResponse, boundary: str) -> None:
        self._sock = sock
        self._response = response
        # cameras disagree on whether the declared boundary includes the leading "--"
        self._delimiter = b"--" + boundary.strip().lstrip("-").encode("latin-1")
        self._next_delimiter = re.compile(re.escape(self._delimiter))
        self._buffer = bytearray()
        self.skipped_bytes = 0
        """Bytes thrown away while resynchronising (junk between parts, oversized parts)."""

    def next_part(self) -> bytes:
        """The body of the next part (a JPEG if the camera is well).

        Junk between parts and parts without a usable length are skipped by resynchronising
        on the boundary. Raises CameraError when the stream ends or stalls past the timeout.
        """
        while True:
            self._sync()
            found = self._search(_HEADERS_END, len(self._delimiter), MAX_HEADER_BYTES)
            if found is None:  # no end of headers: not a real part
                self._drop(len(self._delimiter))
                continue
            headers_end, body_start = found
            match = _LENGTH.search(bytes(self._buffer[:headers_end]))
            length = int(match.group(1)) if match else None
            if length is not None and length <= MAX_PART_BYTES:
                self._fill(body_start + length)
                body = bytes(self._buffer[body_start : body_start + length])
                del self._buffer[: body_start + length]
                return body
            # no usable length: the part ends where the next boundary starts
            found = self._search(self._next_delimiter, body_start, MAX_PART_BYTES)
            if found is None:  # an oversized part: skip it, then resynchronise
                self._drop(len(self._buffer))
                continue
            body = bytes(self._buffer[body_start : found[0]]).removesuffix(b"\r\n")
            del self._buffer[: found[0]]
            return body

    def interrupt(self) -> None:
        """Make a read in progress fail at once; safe from any thread (the owner still closes)."""
        with contextlib.suppress(OSError):  # already closed, or by the peer
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the connection; only from the thread that reads."""
        self.interrupt()
        self._response.close()
        self._sock.close()

    def _sync(self) -> None:
        """Read until the buffer starts with a boundary, dropping whatever comes before it."""
        while True:
            at = self._buffer.find(self._delimiter)
            if at >= 0:
                self._drop(at)
                return
            self._drop(max(0, len(self._buffer) - len(self._delimiter)))  # keep a tail that may start one
            self._read_more()

    def _search(self, pattern: re.Pattern[bytes], start: int, limit: int) -> tuple[int, int] | None:
        """(start, end) of `pattern` at or after `start`, reading as needed; None past `limit` bytes."""
        while True:
            match = pattern.search(self._buffer, start)
            if match is not None:
                return match.start(), match.end()
            if len(self._buffer) - start > limit:
                return None
            self._read_more()

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            self._read_more()

    def _drop(self, count: int) -> None:
        if bytes(self._buffer[:count]).strip():  # the CRLF that ends every part is no junk
            self.skipped_bytes += count
        del self._buffer[:count]

    def _read_more(self) -> None:
        try:
            chunk = self._response.read1(CHUNK)
        except TimeoutError:
            raise CameraError("stream stalled (read timed out)") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise CameraError(f"stream failed: {type(exc).__name__}") from None
        if not chunk:
            raise CameraError("stream ended (connection closed)")
        self._buffer += chunk
