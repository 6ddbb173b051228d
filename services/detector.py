"""detector: frames → faces (decode, detect, landmarks, quality gates, alignment)."""

from __future__ import annotations

from collections.abc import Sequence

from facestream import codec
from facestream.runtime import metrics
from facestream.runtime.service import ConsumingService
from facestream.settings import DetectorSettings, ModelSettings, Settings
from facestream.stages.detect import DetectStage
from facestream.stages.tracks import tracks_for
from facestream.transport import topics
from facestream.vision.factory import build_finder


def build(settings: Settings) -> DetectStage:
    detector = settings[DetectorSettings]
    return DetectStage(
        build_finder(detector, settings[ModelSettings]),
        max_frame_pixels=detector.max_frame_pixels,
        thumbnail_px=detector.thumbnail_px,
        max_future_skew_s=detector.max_future_skew_s,
        tracks=tracks_for(detector),
        metrics=metrics.DETECTOR,
    )


SERVICE = ConsumingService(
    name="detector",
    description=__doc__ or "",
    settings=(DetectorSettings, ModelSettings),
    input_topic=topics.FRAMES,
    input_codec=codec.FRAMES,
    output_topic=topics.FACES,
    output_codec=codec.FACES,
    build=build,
)


parser = SERVICE.parser
run = SERVICE.run


def main(argv: Sequence[str] | None = None) -> int:
    return SERVICE.main(argv)
