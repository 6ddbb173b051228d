"""Reading a frame source to its end (or a limit), as the camera tests need it."""

from __future__ import annotations

from facestream.camera.sources import Captured, FrameSource


def read_all(source: FrameSource, limit: int = 1000) -> list[Captured]:
    """Open the source, read until it ends or `limit` frames, close it."""
    source.open()
    out: list[Captured] = []
    try:
        while len(out) < limit and (captured := source.read()) is not None:
            out.append(captured)
    finally:
        source.close()
    return out
