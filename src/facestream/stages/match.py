"""embeddings → hits: search the gallery; a face that matches nothing is dropped, never stored.

A record's `model_id` is the one string of it that reaches a Milvus filter (the authorisation
ids come from the policy, the others are never searched on). One that no filter can take
(gallery/store.py: an alphabet, no escaping) is dead-lettered as `bad_model_id` before any
search, so no record can stop the stage or widen a search; models facestream loads always
have ids that fit (vision/models.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from facestream.errors import GalleryUnavailable, InvalidMessage
from facestream.gallery.store import Gallery, GalleryHit, filter_value_problem, shown
from facestream.messages import Embedding, Hit
from facestream.runtime.metrics import MatcherMetrics

BAD_MODEL_ID = "bad_model_id"
"""The dead-letter reason of a record whose model_id cannot be written into a gallery filter."""


class MatchPolicy(Protocol):
    """What may be matched, decided per face at search time (accountability/policy.py)."""

    def refresh(self) -> None:
        """Called once per batch: pick up changed authorisations and rules before deciding."""
        ...

    def suspended(self, camera_id: str, at_ms: int) -> bool:
        """True when a suspension rule switches matching off for this camera now."""
        ...

    def allowed_authorisations(self, camera_id: str, at_ms: int) -> Sequence[str] | None:
        """Authorisations whose entries may match on this camera now; None means no limit."""
        ...

    def zone_of(self, camera_id: str) -> str | None:
        """The camera's zone as the policy decided with it (carried on each hit); None if unknown."""
        ...


class OpenPolicy:
    """No suspensions and no authorisation limit: for benchmarks and tests of the search alone.
    Every command and service that matches for real uses AccountablePolicy."""

    def refresh(self) -> None:
        return None

    def suspended(self, camera_id: str, at_ms: int) -> bool:
        return False

    def allowed_authorisations(self, camera_id: str, at_ms: int) -> Sequence[str] | None:
        return None

    def zone_of(self, camera_id: str) -> str | None:
        return None


class MatchStage:
    """Searches the gallery under the policy. Counts searches, hits and whether the gallery
    answered into `metrics` (the service passes the exported group, runtime/metrics.py), or into
    a group of its own."""

    name = "matcher"

    def __init__(
        self,
        gallery: Gallery,
        *,
        threshold: float,
        top_k: int,
        policy: MatchPolicy | None = None,
        clock: Callable[[], float] = time.time,
        metrics: MatcherMetrics | None = None,
    ) -> None:
        self._gallery = gallery
        self._metrics = metrics or MatcherMetrics.create()
        self._threshold = threshold
        self._top_k = top_k
        self._policy = policy or OpenPolicy()
        self._clock = clock

    def process(self, items: Sequence[Embedding]) -> list[list[Hit] | InvalidMessage]:
        """One gallery call per (model, authorisation scope) group: Milvus' cost is per call."""
        outcomes: list[list[Hit] | InvalidMessage] = [[] for _ in items]
        now_ms = int(self._clock() * 1000)
        self._policy.refresh()
        groups: dict[tuple[str, tuple[str, ...] | None], list[int]] = {}
        for i, emb in enumerate(items):
            if emb.vector.shape != (self._gallery.dim,):
                # Found by tests/dlq: a unit vector of the wrong length passes the codec, but would
                # fail the whole batch (np.stack) or the gallery call, on every redelivery.
                outcomes[i] = InvalidMessage(
                    "bad_vector",
                    f"vector has {emb.vector.size} values; the gallery holds {self._gallery.dim}",
                )
                continue
            problem = filter_value_problem(emb.model_id)
            if problem is not None:
                # Found by issue 12: a model file named with a space crash-looped the matcher here.
                outcomes[i] = InvalidMessage(
                    BAD_MODEL_ID, f"model_id {shown(emb.model_id)} cannot name a gallery model: {problem}"
                )
                continue
            if self._policy.suspended(emb.ref.camera_id, emb.ref.captured_at_ms):
                continue
            allowed = self._policy.allowed_authorisations(emb.ref.camera_id, emb.ref.captured_at_ms)
            scope = None if allowed is None else tuple(sorted(allowed))
            groups.setdefault((emb.model_id, scope), []).append(i)
        for (model_id, scope), indices in groups.items():
            started = time.perf_counter()
            try:
                results = self._gallery.search(
                    np.stack([items[i].vector for i in indices]),
                    model_id=model_id,
                    threshold=self._threshold,
                    top_k=self._top_k,
                    now_ms=now_ms,
                    authorisation_ids=scope,
                )
            except GalleryUnavailable:
                self._metrics.gallery_up.set(0)
                raise
            self._metrics.gallery_search_seconds.observe(time.perf_counter() - started)
            self._metrics.gallery_up.set(1)
            for i, found in zip(indices, results, strict=True):
                zone = self._policy.zone_of(items[i].ref.camera_id)
                outcomes[i] = [self._hit(items[i], g, zone) for g in best_per_identity(found)]
        self._metrics.hits.inc(sum(len(o) for o in outcomes if isinstance(o, list)))
        return outcomes

    @staticmethod
    def _hit(emb: Embedding, found: GalleryHit, zone: str | None) -> Hit:
        return Hit(
            ref=emb.ref,
            face_index=emb.face_index,
            bbox=emb.bbox,
            score=round(found.score, 4),
            identity=found.identity,
            entry_id=found.entry_id,
            authorisation_id=found.authorisation_id,
            model_id=emb.model_id,
            thumbnail_jpeg=emb.thumbnail_jpeg,
            zone=zone,
        )


def best_per_identity(found: Sequence[GalleryHit]) -> list[GalleryHit]:
    """An identity enrolled from several photos counts once, with its best photo's score."""
    best: dict[str, GalleryHit] = {}
    for hit in found:
        if hit.identity not in best or hit.score > best[hit.identity].score:
            best[hit.identity] = hit
    return sorted(best.values(), key=lambda h: h.score, reverse=True)
