"""Coverage-guided fuzzing (atheris / libFuzzer) of every decoder a stage runs on untrusted bytes.

The first byte picks the target: one of the topic codecs, the JPEG header reader and decoder, or
the camera-config parser; the rest is the input. A target may only raise its defined error
(InvalidMessage, ConfigError); anything else is a crash, which libFuzzer reports with the input.

    python tests/fuzz/atheris_decoders.py -runs=20000 -seed=1   # what tests/fuzz/test_atheris.py runs
    python tests/fuzz/atheris_decoders.py -max_total_time=600   # a longer local session
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from facestream import codec
    from facestream.camera.spec import parse_camera
    from facestream.errors import ConfigError, InvalidMessage
    from facestream.imaging import decode_jpeg, jpeg_dimensions
    from facestream.review.wire import ALERTS, REVIEWS

CODECS = [
    codec.CAMERAS,
    codec.FRAMES,
    codec.FACES,
    codec.EMBEDDINGS,
    codec.HITS,
    codec.MATCHES,
    codec.EPISODES,
    REVIEWS,
    ALERTS,
]


def _decode_jpeg(data: bytes) -> object:
    return decode_jpeg(data, max_pixels=250_000)


TARGETS: list[Callable[[bytes], object]] = [
    *(c.decode for c in CODECS),
    jpeg_dimensions,
    _decode_jpeg,
    parse_camera,
]


def one_input(data: bytes) -> None:
    if not data:
        return
    target = TARGETS[data[0] % len(TARGETS)]
    with contextlib.suppress(InvalidMessage, ConfigError):
        target(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
