"""faces → embeddings: one model call per batch, vectors L2-normalised."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facestream.errors import InvalidMessage
from facestream.messages import Embedding, Face
from facestream.vision.embedder import FaceEmbedder


class EmbedStage:
    """The runner's batch (size or time window, whichever fills first) is the model batch."""

    name = "embedder"

    def __init__(self, embedder: FaceEmbedder) -> None:
        self._embedder = embedder

    def process(self, items: Sequence[Face]) -> list[list[Embedding] | InvalidMessage]:
        if not items:
            return []
        crops = np.stack([face.aligned_array() for face in items])
        vectors = self._embedder.embed(crops)
        outcomes: list[list[Embedding] | InvalidMessage] = []
        for face, vector in zip(items, vectors, strict=True):
            if not np.isfinite(vector).all():
                outcomes.append(InvalidMessage("bad_vector", "model returned a non-finite vector"))
                continue
            outcomes.append(
                [
                    Embedding(
                        ref=face.ref,
                        face_index=face.face_index,
                        bbox=face.bbox,
                        quality=face.quality,
                        model_id=self._embedder.model_id,
                        vector=vector,
                        thumbnail_jpeg=face.thumbnail_jpeg,
                    )
                ]
            )
        return outcomes
