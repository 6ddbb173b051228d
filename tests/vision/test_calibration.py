"""Calibration of the match threshold on the real photos: genuine vs impostor cosine scores.

Identities come from file names and, in the two-person scenes, from position (see
tests/fixtures/media.py). The numbers printed here (run with `-s`) are the ones quoted in
docs/models.md.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from facestream.settings import EmbedderSettings, MatcherSettings, ModelSettings
from facestream.vision.factory import build_embedder
from tests.fixtures.media import RESOLUTIONS, LabelledFace

MARGIN = 0.1
"""The threshold must stay this far from both the best impostor and the worst genuine score."""


@dataclass(frozen=True)
class Scores:
    genuine: list[tuple[float, str]]
    impostor: list[tuple[float, str]]

    @property
    def worst_genuine(self) -> float:
        return min(s for s, _ in self.genuine)

    @property
    def best_impostor(self) -> float:
        return max(s for s, _ in self.impostor)

    def line(self, name: str) -> str:
        g = np.array([s for s, _ in self.genuine])
        i = np.array([s for s, _ in self.impostor])
        return (
            f"{name}: genuine n={len(g)} min={g.min():.3f} median={np.median(g):.3f} max={g.max():.3f} "
            f"({min(self.genuine)[1]}); impostor n={len(i)} max={i.max():.3f} median={np.median(i):.3f} "
            f"({max(self.impostor)[1]}); gap={self.worst_genuine - self.best_impostor:.3f}"
        )


SAME_PHOTOGRAPH = (
    {"enroll/obama_1.jpg:obama", *(f"scenes/obama_{res}.jpg:obama" for res in RESOLUTIONS)},
    {"enroll/biden_1.jpg:biden", "scenes/two_people.jpg:biden"},
)
"""Faces that are one photograph (rescaled or cropped): checked by eye, and they score 0.96-0.99.
A pair of them measures the pipeline's repeatability, not whether it recognises a person."""


def same_photograph(a: LabelledFace, b: LabelledFace) -> bool:
    return a.photo == b.photo or any({name(a), name(b)} <= group for group in SAME_PHOTOGRAPH)


def name(face: LabelledFace) -> str:
    return f"{face.photo.parent.name}/{face.photo.name}:{face.identity}"


def scores(faces: list[LabelledFace], vectors: np.ndarray) -> Scores:
    genuine: list[tuple[float, str]] = []
    impostor: list[tuple[float, str]] = []
    for (a, fa), (b, fb) in itertools.combinations(enumerate(faces), 2):
        if same_photograph(fa, fb):
            continue
        label = f"{name(fa)} vs {name(fb)}"
        pair = (float(vectors[a] @ vectors[b]), label)
        (genuine if fa.identity == fb.identity else impostor).append(pair)
    return Scores(genuine, impostor)


@pytest.fixture(scope="module")
def by_channel_order(labelled_faces: list[LabelledFace], model_settings: ModelSettings) -> dict[str, Scores]:
    crops = np.stack([f.observation.aligned for f in labelled_faces])
    out = {}
    for order in ("bgr", "rgb"):
        embedder = build_embedder(EmbedderSettings(channel_order=order), model_settings)
        out[order] = scores(labelled_faces, embedder.embed(crops))
        print(out[order].line(order))
    return out


def test_the_data_has_enough_pairs(by_channel_order: dict[str, Scores]) -> None:
    measured = by_channel_order["bgr"]
    assert len(measured.genuine) >= 30
    assert len(measured.impostor) >= 100


def test_default_threshold_separates_genuine_from_impostor_with_a_margin(
    by_channel_order: dict[str, Scores],
) -> None:
    default = EmbedderSettings().channel_order
    measured = by_channel_order[default]
    threshold = MatcherSettings().match_threshold
    assert measured.best_impostor + MARGIN <= threshold, max(measured.impostor)
    assert threshold <= measured.worst_genuine - MARGIN, min(measured.genuine)


def test_bgr_feeding_separates_better_than_rgb(by_channel_order: dict[str, Scores]) -> None:
    """Why channel_order defaults to bgr for the shipped embedder."""
    assert EmbedderSettings().channel_order == "bgr"
    bgr, rgb = by_channel_order["bgr"], by_channel_order["rgb"]
    assert bgr.worst_genuine - bgr.best_impostor > rgb.worst_genuine - rgb.best_impostor
