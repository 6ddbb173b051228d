"""The embedded mode: every stage in one process over the in-process broker.

It runs exactly the stage objects and `StageRunner` the Kafka services run; only the
transport differs. The loop is single-threaded and deterministic: read one frame from
each source in turn, then step every stage until its input topic is drained.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream import codec
from facestream.camera.sampler import FrameEncoder
from facestream.camera.sources import FrameSource, open_source
from facestream.camera.spec import IMAGE_SUFFIXES, CameraSpec, camera_id_for
from facestream.errors import CameraError
from facestream.messages import Candidate, Frame
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
        episodes = EpisodeStage(EpisodeTracker({}, gap_ms=episode_gap_ms))
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
) -> Iterator[Candidate]:
    """Run every source to its end, yielding candidates as they open."""
    active: list[tuple[CameraSpec, FrameSource]] = []
    for spec in specs:
        source = open_source(spec, default_fps=default_fps)
        try:
            source.open()
        except CameraError as exc:
            failures.append(SourceFailure(spec.redacted_url, str(exc)))
            continue
        active.append((spec, source))
    try:
        while active:
            still_running = []
            for spec, source in active:
                try:
                    captured = source.read()
                except CameraError as exc:
                    failures.append(SourceFailure(spec.redacted_url, str(exc)))
                    source.close()
                    continue
                if captured is None:
                    source.close()
                    continue
                pipeline.feed(encoder.frame(spec, captured))
                still_running.append((spec, source))
                yield from pipeline.drain()
            active = still_running
    finally:
        for _, source in active:
            source.close()
