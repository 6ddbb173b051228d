"""The gallery filter: an entry past its valid_until_ms never matches (Milvus Lite, and the real
server searching an HNSW index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.settings import MatcherSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.media import real_faces
from tests.fixtures.milvus import BOTH_BACKENDS, GalleryBackend

VALID_UNTIL_MS = 1_900_000_000_000


@BOTH_BACKENDS
def test_an_expired_entry_never_matches(
    finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path, gallery_backend: GalleryBackend
) -> None:
    settings = gallery_backend.settings()
    gallery = Gallery(settings, dim=embedder.dim)
    try:
        enroller = Enroller(finder, embedder, gallery, settings)
        enroller.enroll("obama", [faces_dir / "enroll" / "obama_1.jpg"], valid_until_ms=VALID_UNTIL_MS)
        enroller.enroll("biden", [faces_dir / "enroll" / "biden_1.jpg"])  # valid forever
        (obama,) = real_faces(finder, faces_dir / "probe" / "obama.jpg")
        biden = real_faces(finder, faces_dir / "scenes" / "two_people.jpg")[1]
        probes = embedder.embed(obama.aligned[None]), embedder.embed(biden.aligned[None])

        def found(vector: np.ndarray, now_ms: int) -> list[str]:
            (hits,) = gallery.search(
                vector,
                model_id=embedder.model_id,
                threshold=MatcherSettings().match_threshold,
                top_k=3,
                now_ms=now_ms,
            )
            return [h.identity for h in hits]

        assert found(probes[0], VALID_UNTIL_MS - 1) == ["obama"]
        assert found(probes[0], VALID_UNTIL_MS) == []
        assert found(probes[0], VALID_UNTIL_MS + 86_400_000) == []
        assert found(probes[1], VALID_UNTIL_MS + 86_400_000) == ["biden"]
        # expired is filtered, not deleted: the entry is still listed until it is purged
        assert sorted(e.identity for e in gallery.entries()) == ["biden", "obama"]
    finally:
        gallery.close()


@BOTH_BACKENDS
def test_vectors_of_another_model_never_match(
    finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path, gallery_backend: GalleryBackend
) -> None:
    settings = gallery_backend.settings()
    gallery = Gallery(settings, dim=embedder.dim)
    try:
        Enroller(finder, embedder, gallery, settings).enroll("obama", [faces_dir / "enroll" / "obama_1.jpg"])
        (obama,) = real_faces(finder, faces_dir / "probe" / "obama.jpg")
        vector = embedder.embed(obama.aligned[None])
        same = gallery.search(vector, model_id=embedder.model_id, threshold=0.4, top_k=3)
        other = gallery.search(vector, model_id="another-model@000000000000", threshold=0.4, top_k=3)
        assert [h.identity for h in same[0]] == ["obama"]
        assert other == [[]]
    finally:
        gallery.close()
