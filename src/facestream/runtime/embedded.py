"""The embedded mode: every stage in one process over the in-process broker.

It runs exactly the stage objects and `StageRunner` the Kafka services run; only the
transport differs. The loop is single-threaded and deterministic: read one frame from
each source in turn, then step every stage until its input topic is drained. Live streams
all run at once (they do not wait); files and stills run one after another, so memory
stays bounded whatever the number of sources.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream import codec
from facestream.camera.sampler import FrameEncoder
from facestream.camera.sources import MAX_FRAME_PIXELS, FrameSource, open_source
from facestream.camera.spec import IMAGE_SUFFIXES, CameraSpec, camera_id_for
from facestream.errors import CameraError
from facestream.messages import Candidate, EpisodeEnd, Frame
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.stages.episodes import EpisodeStage, EpisodeTracker
from facestream.stages.match import MatchStage
from facestream.transport import topics
from facestream.transport.memory import MemoryBroker, MemoryConsumer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceFailure:
    source: str
    reason: str


class EmbeddedPipeline:
    """frames → detector → embedder → matcher → episodes → matches, in memory."""

    def __init__(
        self,
        detect: DetectStage,
        embed: EmbedStage,
        match: MatchStage,
        *,
        episode_gap_ms: int,
        batch_size: int = 32,
    ) -> None:
        self.broker = MemoryBroker()
        policy = LoopPolicy(
            batch_size=batch_size, batch_timeout_s=0.0, max_invalid_ratio=1.0, wait_for_gallery=False
        )
        self._episodes = EpisodeTracker({}, gap_ms=episode_gap_ms)
        episodes = EpisodeStage(self._episodes)
        chain: list[tuple[Any, str, Any, str, Any]] = [
            (detect, topics.FRAMES, codec.FRAMES, topics.FACES, codec.FACES),
            (embed, topics.FACES, codec.FACES, topics.EMBEDDINGS, codec.EMBEDDINGS),
            (match, topics.EMBEDDINGS, codec.EMBEDDINGS, topics.HITS, codec.HITS),
            (episodes, topics.HITS, codec.HITS, topics.MATCHES, codec.MATCHES),
        ]
        self.runners: list[StageRunner[Any, Any]] = []
        for stage, in_topic, in_codec, out_topic, out_codec in chain:
            runner: StageRunner[Any, Any] = StageRunner(
                stage,
                Route(in_topic, in_codec, out_topic, out_codec, topics.dlq(stage.name)),
                self.broker.consumer(f"facestream-{stage.name}"),
                self.broker.producer(),
                policy=policy,
            )
            runner.start()
            self.runners.append(runner)
        self._producer = self.broker.producer()
        self._matches: MemoryConsumer = self.broker.consumer("embedded-output")
        self._matches.subscribe([topics.MATCHES])

    def feed(self, frame: Frame) -> None:
        self._producer.produce(topics.FRAMES, codec.FRAMES.encode(frame), key=frame.key)

    def drain(self) -> list[Candidate]:
        """Step every stage until nothing is left in flight; return the new candidates."""
        while any(runner.run_once() for runner in self.runners):
            pass
        envelopes = self._matches.consume(10_000, 0)
        self._matches.commit({(e.topic, e.partition): e.offset + 1 for e in envelopes})
        return [codec.MATCHES.decode(e.value) for e in envelopes]

    def ended(self, camera_id: str, through_ms: int | None) -> list[EpisodeEnd]:
        """The episodes of `camera_id` that have ended by its frame captured at `through_ms` (None:
        its source has ended), each reported once at its count of hits (the "face gone" event the
        Kafka mode publishes to `episodes.ended`; here the camera's own clock decides, see
        `EpisodeTracker.ends_on_camera`)."""
        due = self._episodes.ends_on_camera(camera_id, through_ms)
        for one in due:
            self._episodes.end_reported(one)
        return [one.end for one in due]

    def dead_letters(self) -> int:
        return sum(len(p.log) for stage in topics.STAGES for p in self.broker.partitions(topics.dlq(stage)))


def specs_for(sources: Sequence[str], fps: float | None = None) -> list[CameraSpec]:
    """Command-line sources as cameras. A folder is a batch of stills, each its own source
    (for a camera that drops snapshots into a folder, configure it in the sampler)."""
    specs: list[CameraSpec] = []
    used: set[str] = set()
    for source in sources:
        path = Path(source)
        members = (
            sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [source]
        )
        for member in members:
            base = camera_id_for(str(member))
            camera_id, n = base, 1
            while camera_id in used:
                n += 1
                camera_id = f"{base}-{n}"
            used.add(camera_id)
            specs.append(CameraSpec(camera_id=camera_id, url=str(member), fps=fps))
    return specs


def identify(
    pipeline: EmbeddedPipeline,
    specs: Iterable[CameraSpec],
    *,
    default_fps: float,
    encoder: FrameEncoder,
    failures: list[SourceFailure],
    max_pixels: int = MAX_FRAME_PIXELS,
    stop: threading.Event | None = None,
    on_end: Callable[[EpisodeEnd], None] | None = None,
) -> Iterator[Candidate]:
    """Run every source to its end, or until `stop` is set (checked between frames), yielding
    candidates as they open; `on_end` (if given) is told of each candidate's episode as it ends:
    after a frame of its camera captured more than the episode gap after its last hit, or when
    its source ends, fails or the run is stopped (then every open one), after the candidates of
    the same frame.

    Live streams are opened first and read side by side, one frame each in turn. Files and
    stills are finite: they take one turn slot between them, each opened only when the one
    before has ended, so at most one video is open and one still decoded at any time, and a
    folder of thousands of stills costs no more memory than one. A source that cannot be
    opened or read is recorded in `failures`; the others go on.
    """
    sources = [(spec, open_source(spec, default_fps=default_fps, max_pixels=max_pixels)) for spec in specs]

    def opened(spec: CameraSpec, source: FrameSource) -> bool:
        try:
            source.open()
        except CameraError as exc:
            failures.append(SourceFailure(spec.redacted_url, str(exc)))
            return False
        return True

    live = [(spec, source) for spec, source in sources if source.live and opened(spec, source)]
    finite = deque((spec, source) for spec, source in sources if not source.live)
    current: tuple[CameraSpec, FrameSource] | None = None
    turn = _Turn(pipeline, encoder, failures, on_end)
    try:
        while stop is None or not stop.is_set():
            while current is None and finite:
                spec, source = finite.popleft()
                current = (spec, source) if opened(spec, source) else None
            if current is not None and not (yield from turn(*current)):
                current = None
                continue  # the next file takes the slot in this same round
            still_live = []
            for spec, source in live:
                if (yield from turn(spec, source)):
                    still_live.append((spec, source))
            live = still_live
            if not live and current is None and not finite:
                return
        for spec, _ in [*live, *([current] if current is not None else [])]:
            turn.report_ends(spec.camera_id, None)  # stopped: what was read is over
    finally:
        for _, source in [*live, *([current] if current is not None else [])]:
            source.close()


@dataclass(frozen=True, slots=True)
class _Turn:
    """One frame of one source through every stage, then the episodes that frame ended."""

    pipeline: EmbeddedPipeline
    encoder: FrameEncoder
    failures: list[SourceFailure]
    on_end: Callable[[EpisodeEnd], None] | None

    def __call__(self, spec: CameraSpec, source: FrameSource) -> Generator[Candidate, None, bool]:
        """Yields the frame's candidates; False (and the source closed) once the source has ended."""
        try:
            captured = source.read()
        except CameraError as exc:
            self.failures.append(SourceFailure(spec.redacted_url, str(exc)))
            captured = None
        if captured is None:
            source.close()
            self.report_ends(spec.camera_id, None)
            return False
        frame = self.encoder.frame(spec, captured)
        del captured  # the decoded image is not kept while the stages run
        self.pipeline.feed(frame)
        yield from self.pipeline.drain()
        self.report_ends(spec.camera_id, frame.ref.captured_at_ms)
        return True

    def report_ends(self, camera_id: str, through_ms: int | None) -> None:
        if self.on_end is not None:
            for end in self.pipeline.ended(camera_id, through_ms):
                self.on_end(end)
