"""Enrollment through the real path (detector, landmarks, gates, embedder, Milvus Lite); the tests of
what enrollment writes to the gallery run on the real Milvus server (HNSW) too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facestream.errors import EnrollmentRefused
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.settings import MatcherSettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.media import read, vector_of
from tests.fixtures.milvus import BOTH_BACKENDS, GalleryBackend

THRESHOLD = MatcherSettings().match_threshold


@pytest.fixture(scope="module")
def gallery_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gallery")


@pytest.fixture
def lite_gallery_dir(gallery_dir: Path) -> Path:
    return gallery_dir


@pytest.fixture
def gallery(gallery_backend: GalleryBackend, embedder: FaceEmbedder) -> Iterator[Gallery]:
    """A fresh collection per test; one Milvus Lite directory per module keeps it quick."""
    store = Gallery(gallery_backend.settings(), dim=embedder.dim)
    yield store
    store.close()


@pytest.fixture
def enroller(finder: FaceFinder, embedder: FaceEmbedder, gallery: Gallery) -> Enroller:
    return Enroller(finder, embedder, gallery, gallery.settings)


@BOTH_BACKENDS
def test_biden_2_enrolls_only_the_real_face(
    enroller: Enroller, gallery: Gallery, finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path
) -> None:
    photo = faces_dir / "enroll" / "biden_2.jpg"
    faces = finder.find(read(photo))
    false_face = min(faces, key=lambda f: f.quality.det_score)
    assert len(faces) == 2 and false_face.usable, "the detector's false face must be there to be dropped"

    result = enroller.enroll("biden", [photo])

    assert len(result.photos) == 1
    assert result.photos[0].det_score >= 0.99
    assert result.photos[0].size_px > 400  # the real face is 441 px, the painting's 360 px
    assert [e.identity for e in gallery.entries()] == ["biden"]
    other_biden = vector_of(finder, embedder, faces_dir / "enroll" / "biden_1.jpg")
    (hits,) = gallery.search(other_biden, model_id=embedder.model_id, threshold=THRESHOLD, top_k=3)
    assert [h.identity for h in hits] == ["biden"]
    painting = embedder.embed(false_face.aligned[None])
    assert gallery.search(painting, model_id=embedder.model_id, threshold=THRESHOLD, top_k=3) == [[]]


def test_two_people_is_refused_as_ambiguous(enroller: Enroller, gallery: Gallery, faces_dir: Path) -> None:
    with pytest.raises(EnrollmentRefused, match="ambiguous, 2 comparable faces"):
        enroller.enroll("obama", [faces_dir / "scenes" / "two_people.jpg"])
    assert gallery.entries() == []


def test_a_photo_without_a_face_is_refused(enroller: Enroller, gallery: Gallery, no_face_photo: Path) -> None:
    with pytest.raises(EnrollmentRefused, match="no face found"):
        enroller.enroll("obama", [no_face_photo])
    assert gallery.entries() == []


@pytest.mark.parametrize("bad", ["two_people", "no_face", "not_an_image", "missing"])
def test_one_bad_photo_refuses_the_whole_request(
    enroller: Enroller, gallery: Gallery, faces_dir: Path, no_face_photo: Path, tmp_path: Path, bad: str
) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is not a JPEG")
    photo = {
        "two_people": faces_dir / "scenes" / "two_people.jpg",
        "no_face": no_face_photo,
        "not_an_image": not_an_image,
        "missing": tmp_path / "missing.jpg",
    }[bad]
    good = faces_dir / "enroll" / "obama_1.jpg"
    with pytest.raises(EnrollmentRefused, match=photo.name):
        enroller.enroll("obama", [good, photo, faces_dir / "enroll" / "obama_2.jpg"])
    assert gallery.entries() == []


@BOTH_BACKENDS
def test_several_photos_per_identity(enroller: Enroller, gallery: Gallery, faces_dir: Path) -> None:
    photos = [faces_dir / "enroll" / "obama_1.jpg", faces_dir / "enroll" / "obama_2.jpg"]
    result = enroller.enroll("obama", photos)
    ids = [p.entry_id for p in result.photos]
    assert len(set(ids)) == 2
    assert sorted(e.entry_id for e in gallery.entries_of("obama")) == sorted(ids)


@BOTH_BACKENDS
def test_re_enrolling_the_same_photo_is_idempotent(
    enroller: Enroller, gallery: Gallery, faces_dir: Path
) -> None:
    photo = faces_dir / "enroll" / "rose_leslie_1.jpg"
    first = enroller.enroll("rose_leslie", [photo])
    second = enroller.enroll("rose_leslie", [photo])
    assert first.photos[0].entry_id == second.photos[0].entry_id
    assert [e.entry_id for e in gallery.entries()] == [first.photos[0].entry_id]
    # the same photo under another name is another entry (the name is part of the id)
    other = enroller.enroll("rose", [photo])
    assert other.photos[0].entry_id != first.photos[0].entry_id


@pytest.mark.parametrize("identity", ['ob"ama', "back\\slash", "new\nline", "", " leading", "x" * 129])
def test_a_bad_identity_name_is_refused(
    enroller: Enroller, gallery: Gallery, faces_dir: Path, identity: str
) -> None:
    with pytest.raises(EnrollmentRefused, match="identity"):
        enroller.enroll(identity, [faces_dir / "enroll" / "obama_1.jpg"])
    assert gallery.entries() == []


@BOTH_BACKENDS
def test_an_apostrophe_is_a_valid_name_and_survives_the_filter(
    enroller: Enroller, gallery: Gallery, faces_dir: Path
) -> None:
    enroller.enroll("Conan O'Brien", [faces_dir / "enroll" / "obama_1.jpg"])
    enroller.enroll("obama", [faces_dir / "enroll" / "obama_2.jpg"])
    assert [e.identity for e in gallery.entries_of("Conan O'Brien")] == ["Conan O'Brien"]
    assert gallery.remove_identity("Conan O'Brien") == 1
    assert [e.identity for e in gallery.entries()] == ["obama"]


def test_no_photo_is_refused(enroller: Enroller) -> None:
    with pytest.raises(EnrollmentRefused, match="at least one photo"):
        enroller.enroll("obama", [])
