"""`identify`'s progress bars: one SOURCE argument at a time, on a terminal only.

Files and folders run one after another (runtime/embedded.py), so one bar is shown at a time:
a folder's bar counts its images, a video's counts seconds of media (its length read from the
container's header), a still's is one step. Live streams have no end to measure against and get
no bar; the summary counts their frames. Bars are left off when stderr is not a terminal (a
pipe, a log file, the demo): there they would be noise.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from facestream.commands.identify_summary import FrameCounts, RunTally, SourceTally, plural
from facestream.messages import Candidate, Frame

log = logging.getLogger(__name__)


class Progress:
    """Feeds tqdm bars from the run's frames (a `CountingPipeline` watcher, after the tally)."""

    def __init__(self, tally: RunTally, *, stream: TextIO) -> None:
        self._tally = tally
        self._stream = stream
        self._bar: tqdm[None] | None = None
        self._source: SourceTally | None = None
        self._candidates = 0

    def frame_done(self, frame: Frame, counts: FrameCounts, found: list[Candidate]) -> None:
        source, member = self._tally.where(frame.ref.camera_id)
        if source.kind == "stream":
            return
        if source is not self._source:
            self._start(source)
        bar = self._bar
        assert bar is not None
        self._candidates += len(found)
        bar.set_postfix_str(
            f"{plural(source.faces, 'face')}, {plural(self._candidates, 'candidate')}", refresh=False
        )
        if source.kind == "video":
            at = source.media_s or 0.0
            bar.update(min(at, bar.total) - bar.n if bar.total is not None else at - bar.n)
        else:
            bar.update(source.members.index(member) + 1 - bar.n)

    def _start(self, source: SourceTally) -> None:
        self.close()
        self._source, self._candidates = source, 0
        name = Path(source.source).name or source.source  # the summary names it in full
        if source.kind == "video":
            total = video_seconds(source.source)
            fmt = (
                "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}{postfix}]"
                if total
                else "{desc}: {n:.1f} s [{elapsed}{postfix}]"
            )
            self._bar = tqdm(
                total=total, desc=name, bar_format=fmt, file=self._stream, leave=False, dynamic_ncols=True
            )
        else:
            unit = "image" if source.kind == "folder" else "still"
            self._bar = tqdm(
                total=len(source.members), desc=name, unit=unit, file=self._stream, leave=False,
                dynamic_ncols=True,
            )  # fmt: skip

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @contextlib.contextmanager
    def showing(self) -> Iterator[None]:
        """Log records go above the bar instead of through it while the run lasts."""
        with logging_redirect_tqdm():
            try:
                yield
            finally:
                self.close()


def video_seconds(path: str) -> float | None:
    """A video's length from its container header (nothing decoded); None when it does not say."""
    import av

    try:
        with av.open(path, mode="r", timeout=10.0) as container:
            if container.duration is not None and container.duration > 0:
                return float(container.duration / av.time_base)
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError) as exc:
        log.debug("no length for %s: %s", path, exc)
    return None
