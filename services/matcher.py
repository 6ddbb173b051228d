"""matcher: embeddings → hits (gallery search) → matches (one candidate per episode)."""

from __future__ import annotations

from collections.abc import Sequence

from facestream import codec
from facestream.gallery.store import Gallery
from facestream.runtime.service import ConsumingService, Settings
from facestream.settings import GallerySettings, MatcherSettings
from facestream.stages.match import MatchStage
from facestream.transport import topics


def build(settings: Settings) -> MatchStage:
    matcher: MatcherSettings = settings[MatcherSettings]
    return MatchStage(
        Gallery(settings[GallerySettings]), threshold=matcher.match_threshold, top_k=matcher.top_k
    )


SERVICE = ConsumingService(
    name="matcher",
    description=__doc__ or "",
    settings=(GallerySettings, MatcherSettings),
    input_topic=topics.EMBEDDINGS,
    input_codec=codec.EMBEDDINGS,
    output_topic=topics.HITS,
    output_codec=codec.HITS,
    build=build,
)


parser = SERVICE.parser
run = SERVICE.run


def main(argv: Sequence[str] | None = None) -> int:
    return SERVICE.main(argv)
