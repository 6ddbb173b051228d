"""What `identify` tells its user: per SOURCE argument, what was read, seen, rejected and matched.

The counts come from the run itself, frame by frame: the embedded pipeline takes one frame
through every stage before the next is read (runtime/embedded.py), so what the detect stage
counted into the run's own `DetectorMetrics` group between two frames belongs to the frame fed
in between (`CountingPipeline`). Nothing here reads the process's exported metrics.

The summary holds counts, file names and the identities that matched, never anything about a
face that matched nobody beyond its being counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prometheus_client import Counter as MetricCounter

from facestream.camera.sources import LIVE_SCHEMES
from facestream.camera.spec import IMAGE_SUFFIXES, CameraSpec, redact
from facestream.messages import Candidate, Frame
from facestream.runtime.embedded import EmbeddedPipeline, SourceFailure, specs_for
from facestream.runtime.metrics import DetectorMetrics
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.match import MatchStage
from facestream.stages.tracks import Decision

Kind = Literal["video", "image", "folder", "stream"]

NAMES_SHOWN = 5
"""Images of a folder named in a summary line; the rest are counted."""


def kind_of(source: str) -> Kind:
    """How the camera layer will read a SOURCE (camera/sources.py `open_source` decides the same way)."""
    if source.lower().startswith(LIVE_SCHEMES):
        return "stream"
    path = Path(source)
    if path.is_dir():
        return "folder"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


@dataclass(frozen=True, slots=True)
class FrameCounts:
    """What the detect stage counted for one frame."""

    faces: int
    rejected: dict[str, int]
    """By quality gate (low_score, too_small, blurred, pose)."""
    repeats: int
    """Faces of a track that already had its face searched (the tracker's `same`): not searched again."""


def counter_values(counter: MetricCounter) -> dict[tuple[str, ...], float]:
    """A counter's current value per label set (() for an unlabelled one)."""
    return {
        tuple(sample.labels.values()): sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


class DetectorReading:
    """Reads a run's own `DetectorMetrics` group as differences: what was counted since last asked."""

    def __init__(self, metrics: DetectorMetrics) -> None:
        self._metrics = metrics
        self._faces: dict[tuple[str, ...], float] = {}
        self._rejected: dict[tuple[str, ...], float] = {}
        self._tracked: dict[tuple[str, ...], float] = {}

    def since_last(self) -> FrameCounts:
        faces, self._faces = _delta(self._metrics.faces_detected, self._faces)
        rejected, self._rejected = _delta(self._metrics.faces_rejected, self._rejected)
        tracked, self._tracked = _delta(self._metrics.faces_tracked, self._tracked)
        return FrameCounts(
            faces=int(faces.get((), 0)),
            rejected={labels[0]: int(n) for labels, n in rejected.items() if n},
            repeats=int(tracked.get((Decision.SAME.value,), 0)),
        )


def _delta(
    counter: MetricCounter, before: dict[tuple[str, ...], float]
) -> tuple[dict[tuple[str, ...], float], dict[tuple[str, ...], float]]:
    now = counter_values(counter)
    return {k: v - before.get(k, 0.0) for k, v in now.items()}, now


FrameDone = Callable[[Frame, FrameCounts, list[Candidate]], None]


class CountingPipeline(EmbeddedPipeline):
    """The embedded pipeline, telling `watchers` what each frame gave once every stage has run.

    `metrics` must be the group `detect` counts into (one per run: DetectorMetrics.create()).
    """

    def __init__(
        self,
        detect: DetectStage,
        embed: EmbedStage,
        match: MatchStage,
        *,
        metrics: DetectorMetrics,
        episode_gap_ms: int,
        watchers: Sequence[FrameDone] = (),
    ) -> None:
        super().__init__(detect, embed, match, episode_gap_ms=episode_gap_ms)
        self._reading = DetectorReading(metrics)
        self._watchers = list(watchers)
        self._fed: Frame | None = None

    def feed(self, frame: Frame) -> None:
        self._fed = frame
        super().feed(frame)

    def drain(self) -> list[Candidate]:
        found = super().drain()
        frame, self._fed = self._fed, None
        if frame is not None:
            counts = self._reading.since_last()
            for watcher in self._watchers:
                watcher(frame, counts, found)
        return found


@dataclass
class SourceTally:
    """One SOURCE argument: a file, a stream, or a folder of stills (each still its own camera)."""

    source: str
    """As typed, credentials removed."""
    kind: Kind
    members: list[str]
    """The files read: a folder's images (by name), or the source itself."""
    frames: int = 0
    faces: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    candidates: list[dict[str, Any]] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    media_s: float | None = None
    """Videos: how far into the file the last sampled frame was."""
    faces_in: Counter[str] = field(default_factory=Counter)
    matched_in: Counter[str] = field(default_factory=Counter)

    def without_candidate(self) -> list[str]:
        """Members where faces were seen and none became a candidate."""
        return [m for m in self.members if self.faces_in[m] and not self.matched_in[m]]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "kind": self.kind,
            "frames": self.frames,
            "faces": self.faces,
            "rejected": dict(sorted(self.rejected.items())),
            "repeats": self.repeats,
            "candidates": len(self.candidates),
            "identities": dict(Counter(c["identity"] for c in self.candidates)),
            "faces_without_candidate": self.without_candidate(),
            "failed": [{"source": f.source, "reason": _reason(f)} for f in self.failures],
        }
        if self.kind == "folder":
            out["images"] = len(self.members)
        if self.kind == "video":
            out["media_s"] = self.media_s
        return out

    def line(self) -> str:
        """One line for a person: what was read and seen, what matched, and, when nothing did,
        that faces were seen all the same (or none). A failure's reason is in its error line."""
        what = {
            "video": "video" + (f", read to {clock(self.media_s)}" if self.media_s is not None else ""),
            "image": "image",
            "folder": f"folder, {plural(len(self.members), 'image')}",
            "stream": "stream",
        }[self.kind]
        parts: list[str] = []
        if self.frames:
            seen = [plural(self.frames, "frame")] if self.kind in ("video", "stream") else []
            if self.faces:
                faces = plural(self.faces, "face")
                if self.rejected:
                    gates = ", ".join(
                        f"{n} {gate.replace('_', ' ')}" for gate, n in sorted(self.rejected.items())
                    )
                    faces += f" ({sum(self.rejected.values())} rejected: {gates})"
                seen.append(faces)
            else:
                seen.append("no face")
            parts.append(", ".join(seen))
            if self.faces:
                parts.append(self._candidates() if self.candidates else "no candidate")
        unmatched = self.without_candidate()
        if self.kind == "folder" and unmatched and self.candidates:
            parts.append(f"faces and no candidate in {plural(len(unmatched), 'image')}: {_names(unmatched)}")
        if self.failures:
            parts.append(self._failed())
        return f"{self.source} ({what}): {'; '.join(parts) if parts else 'nothing read'}"

    def _candidates(self) -> str:
        shown = [
            f"{c['identity']} ({c['score']:.2f})"
            + (f" at {clock(c['media_offset_s'])}" if c.get("media_offset_s") is not None else "")
            for c in self.candidates[:NAMES_SHOWN]
        ]
        more = len(self.candidates) - len(shown)
        return f"{plural(len(self.candidates), 'candidate')}: {', '.join(shown)}" + (
            f" and {more} more" if more > 0 else ""
        )

    def _failed(self) -> str:
        if self.kind == "folder":
            return f"{len(self.failures)} of {plural(len(self.members), 'image')} failed (see above)"
        return "stopped (see above)" if self.frames else "failed (see above)"


class RunTally:
    """Every SOURCE argument's tally, fed frame by frame (`frame_done`) and candidate by candidate."""

    def __init__(self, sources: Sequence[str], specs: Sequence[CameraSpec]) -> None:
        self.sources: list[SourceTally] = []
        self._by_camera: dict[str, tuple[SourceTally, str]] = {}
        self._by_url: dict[str, tuple[SourceTally, str]] = {}
        self._first_ms: dict[str, int] = {}
        rest = list(specs)
        for source in sources:
            count = len(specs_for([source]))  # the same expansion as the run's specs, in the same order
            mine, rest = rest[:count], rest[count:]
            kind = kind_of(source)
            members = [Path(s.url).name if kind == "folder" else redact(source) for s in mine]
            tally = SourceTally(redact(source), kind, members)
            self.sources.append(tally)
            for spec, member in zip(mine, members, strict=True):
                self._by_camera[spec.camera_id] = (tally, member)
                self._by_url.setdefault(spec.redacted_url, (tally, member))

    def where(self, camera_id: str) -> tuple[SourceTally, str]:
        """The SOURCE argument a camera came from, and which of its files it is."""
        return self._by_camera[camera_id]

    def frame_done(self, frame: Frame, counts: FrameCounts, found: list[Candidate]) -> None:
        tally, member = self._by_camera[frame.ref.camera_id]
        tally.frames += 1
        tally.faces += counts.faces
        tally.faces_in[member] += counts.faces
        tally.rejected.update(counts.rejected)
        tally.repeats += counts.repeats
        offset = self.media_offset_s(frame.ref.camera_id, frame.ref.captured_at_ms)
        if offset is not None:
            tally.media_s = offset

    def media_offset_s(self, camera_id: str, captured_at_ms: int) -> float | None:
        """Seconds into a video file; None for stills and streams.

        A file's capture times are the time its reading began plus the media position
        (MediaFile: media time 0 is when it was opened, unless the camera sets `start_at_ms`), and
        its first sampled frame is at media time 0, so the offset is the time since that frame.
        """
        tally, _ = self._by_camera[camera_id]
        if tally.kind != "video":
            return None
        first = self._first_ms.setdefault(camera_id, captured_at_ms)
        return round((captured_at_ms - first) / 1000.0, 3)

    def candidate(self, candidate: Candidate, shown: dict[str, Any]) -> None:
        tally, member = self._by_camera[candidate.ref.camera_id]
        tally.candidates.append(shown)
        tally.matched_in[member] += 1

    def failure(self, failure: SourceFailure) -> None:
        tally, _ = self._by_url[failure.source]
        tally.failures.append(failure)

    def totals(self) -> dict[str, Any]:
        rejected: Counter[str] = Counter()
        for t in self.sources:
            rejected.update(t.rejected)
        return {
            "sources": len(self.sources),
            "frames": sum(t.frames for t in self.sources),
            "faces": sum(t.faces for t in self.sources),
            "rejected": dict(sorted(rejected.items())),
            "candidates": sum(len(t.candidates) for t in self.sources),
            "failed": sum(len(t.failures) for t in self.sources),
        }

    def as_json(self) -> dict[str, Any]:
        """The `--summary` object: {"summary": {totals..., "per_source": [...]}}."""
        return {"summary": {**self.totals(), "per_source": [t.as_json() for t in self.sources]}}

    def text(self) -> str:
        t = self.totals()
        head = (
            f"facestream identify: {plural(t['sources'], 'source')}, {plural(t['frames'], 'frame')}, "
            f"{plural(t['faces'], 'face')}, {plural(t['candidates'], 'candidate')}"
            + (f", {t['failed']} failed" if t["failed"] else "")
        )
        return "\n".join([head, *(f"  {s.line()}" for s in self.sources)]) + "\n"


def clock(seconds: float | None) -> str:
    """m:ss.s (h:mm:ss.s past an hour): the position a video player shows."""
    if seconds is None:
        return "?"
    tenths = round(seconds * 10)
    minutes, tenth_s = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    secs = f"{tenth_s // 10:02d}.{tenth_s % 10}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def _reason(failure: SourceFailure) -> str:
    """The reason without the URL that camera errors start with."""
    return failure.reason.removeprefix(f"{failure.source}: ")
