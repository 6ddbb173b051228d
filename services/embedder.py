"""embedder: faces → embeddings, batched by size or time window (CUDA when present)."""

from __future__ import annotations

from collections.abc import Sequence

from facestream import codec
from facestream.runtime.service import ConsumingService
from facestream.settings import EmbedderSettings, ModelSettings, Settings
from facestream.stages.embed import EmbedStage
from facestream.transport import topics
from facestream.vision.factory import build_embedder


def build(settings: Settings) -> EmbedStage:
    return EmbedStage(build_embedder(settings[EmbedderSettings], settings[ModelSettings]))


SERVICE = ConsumingService(
    name="embedder",
    description=__doc__ or "",
    settings=(EmbedderSettings, ModelSettings),
    input_topic=topics.FACES,
    input_codec=codec.FACES,
    output_topic=topics.EMBEDDINGS,
    output_codec=codec.EMBEDDINGS,
    build=build,
)


parser = SERVICE.parser
run = SERVICE.run


def main(argv: Sequence[str] | None = None) -> int:
    return SERVICE.main(argv)
