"""The match policy, through the real MatchStage and a real Milvus Lite gallery with real face vectors:
no match without an authorisation in force and in scope; suspension rules switch matching off.
Revocation is checked on the real Milvus server (HNSW) too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from facestream import codec
from facestream.accountability.authorisations import Authorisation, AuthorisationStore
from facestream.accountability.policy import AccountablePolicy
from facestream.accountability.rules import RuleStore
from facestream.accountability.zones import CameraZones
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.messages import BBox, Embedding, FrameRef, Quality
from facestream.stages.match import MatchStage
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.milvus import BOTH_BACKENDS, GalleryBackend

T0 = 1_900_000_000_000
"""'Now' in these tests (2030); every clock below is relative to it."""
HOUR = 3_600_000
ZONES = {"cam-a": "default", "cam-b": "station", "cam-c": "station"}


@pytest.fixture(scope="module")
def probe_vectors(
    finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path
) -> dict[str, npt.NDArray[np.float32]]:
    """Real embeddings of probe photos (other photos than those enrolled)."""
    out = {}
    for name in ("obama", "alex_lacamoire", "kit_harington_unenrolled"):
        image = cv2.imread(str(faces_dir / "probe" / f"{name}.jpg"))
        (face,) = [f for f in finder.find(image) if f.usable]
        out[name] = embedder.embed(face.aligned[None])[0]
    return out


@dataclass
class World:
    state: Path
    store: AuthorisationStore
    rules: RuleStore
    gallery: Gallery
    enroller: Enroller
    clock_s: list[float]
    stage: MatchStage
    policy: AccountablePolicy
    model_id: str

    def grant(self, **kw: object) -> Authorisation:
        args: dict[str, object] = {
            "case_ref": "C", "legal_basis": "b", "purpose": "wanted", "issued_by": "court",
            "granted_by": "ana", "valid_from_ms": T0 - HOUR, "valid_until_ms": T0 + HOUR, "at_ms": T0 - HOUR,
        }  # fmt: skip
        args.update(kw)
        return self.store.grant(**args)  # type: ignore[arg-type]

    def enroll(self, identity: str, auth: Authorisation | None, faces_dir: Path) -> None:
        photos = sorted((faces_dir / "enroll").glob(f"{identity}_*.jpg"))
        self.enroller.enroll(
            identity,
            photos,
            authorisation_id=auth.id if auth else "",
            valid_until_ms=auth.valid_until_ms if auth else 2**62,
        )

    def match(
        self, *faces: tuple[str, str, int], vectors: dict[str, npt.NDArray[np.float32]]
    ) -> list[set[str]]:
        """(probe, camera, captured_at_ms) → the identities matched for each."""
        items = [
            Embedding(
                ref=FrameRef(camera, f"{camera}-{at}-{i}", at, f"test://{camera}"),
                face_index=0,
                bbox=BBox(0, 0, 100, 100),
                quality=Quality(1.0, 100.0, 100.0, 0.0),
                model_id=self.model_id,
                vector=vectors[probe],
                thumbnail_jpeg=b"",
            )
            for i, (probe, camera, at) in enumerate(faces)
        ]
        outcomes = self.stage.process(items)
        return [{h.identity for h in o} for o in outcomes if isinstance(o, list)]


@pytest.fixture
def world(
    tmp_path: Path, finder: FaceFinder, embedder: FaceEmbedder, gallery_backend: GalleryBackend
) -> Iterator[World]:
    settings = gallery_backend.settings()
    gallery = Gallery(settings, dim=embedder.dim)
    state = tmp_path / "state"
    clock_s = [T0 / 1000]
    store, rules = AuthorisationStore(state), RuleStore(state)
    policy = AccountablePolicy(store, rules, CameraZones(ZONES), clock=lambda: clock_s[0])
    stage = MatchStage(gallery, threshold=0.4, top_k=3, policy=policy, clock=lambda: clock_s[0])
    try:
        yield World(
            state,
            store,
            rules,
            gallery,
            Enroller(finder, embedder, gallery, settings),
            clock_s,
            stage,
            policy,
            embedder.model_id,
        )
    finally:
        gallery.close()


def test_entries_match_only_on_cameras_in_their_authorisations_scope(
    world: World, faces_dir: Path, probe_vectors: dict[str, npt.NDArray[np.float32]]
) -> None:
    by_camera = world.grant(cameras=("cam-a",))
    by_zone = world.grant(zones=("station",))
    world.enroll("obama", by_camera, faces_dir)
    world.enroll("alex_lacamoire", by_zone, faces_dir)
    got = world.match(
        ("obama", "cam-a", T0),
        ("obama", "cam-b", T0),
        ("alex_lacamoire", "cam-b", T0),
        ("alex_lacamoire", "cam-c", T0),
        ("alex_lacamoire", "cam-a", T0),
        ("obama", "cam-x", T0),  # zone unknown: only a scope naming the camera covers it
        ("kit_harington_unenrolled", "cam-a", T0),
        vectors=probe_vectors,
    )
    assert got == [{"obama"}, set(), {"alex_lacamoire"}, {"alex_lacamoire"}, set(), set(), set()]
    assert world.policy.counts.authorisations == {by_camera.id, by_zone.id}


def test_no_match_without_an_authorisation_in_force(
    world: World, faces_dir: Path, probe_vectors: dict[str, npt.NDArray[np.float32]]
) -> None:
    world.enroll("obama", None, faces_dir)  # an entry under no authorisation (e.g. written by old code)
    assert world.match(("obama", "cam-a", T0), vectors=probe_vectors) == [set()]
    # The same vector and gallery without the policy would match: it is the policy that refuses.
    open_stage = MatchStage(world.gallery, threshold=0.4, top_k=3, clock=lambda: T0 / 1000)
    assert [h.identity for h in open_stage.process([_embedding(world, probe_vectors["obama"])])[0]] == [
        "obama"
    ]  # type: ignore[union-attr]


def _embedding(world: World, vector: npt.NDArray[np.float32], camera: str = "cam-a") -> Embedding:
    return Embedding(
        ref=FrameRef(camera, f"{camera}@{T0}", T0, f"test://{camera}"),
        face_index=0,
        bbox=BBox(0, 0, 100, 100),
        quality=Quality(1.0, 100.0, 100.0, 0.0),
        model_id=world.model_id,
        vector=vector,
        thumbnail_jpeg=b"",
    )


def test_each_hit_carries_the_zone_its_camera_was_matched_in(
    world: World, faces_dir: Path, probe_vectors: dict[str, npt.NDArray[np.float32]], tmp_path: Path
) -> None:
    """The zone the policy decided with (read from the matcher's cameras file, as the service does)
    travels on the hit, through the codec, so `matches` consumers need no camera list of their own."""
    world.enroll("obama", world.grant(), faces_dir)  # in force on every camera, whatever its zone
    cameras = tmp_path / "cameras.json"

    def zones_file(zone: str) -> None:
        cameras.write_text(json.dumps([{"camera_id": "cam-a", "url": "rtsp://10.0.0.1/a", "zone": zone}]))

    zones_file("north-gate")
    policy = AccountablePolicy(
        world.store, world.rules, CameraZones(cameras_file=cameras), clock=lambda: world.clock_s[0]
    )
    stage = MatchStage(world.gallery, threshold=0.4, top_k=3, policy=policy, clock=lambda: world.clock_s[0])
    faces = [_embedding(world, probe_vectors["obama"], camera) for camera in ("cam-a", "cam-x")]

    def zones_of_hits() -> list[list[str | None]]:
        outcomes = stage.process(faces)
        assert all(isinstance(o, list) for o in outcomes)
        return [[codec.HITS.decode(codec.HITS.encode(h)).zone for h in o] for o in outcomes]  # type: ignore[union-attr]

    assert zones_of_hits() == [["north-gate"], [None]]  # cam-x is not in the file: its zone is unknown
    zones_file("riverside-west")  # the camera moved to another zone: the next batch says so
    assert zones_of_hits() == [["riverside-west"], [None]]


@BOTH_BACKENDS
def test_revocation_stops_matching_at_the_next_batch(
    world: World, faces_dir: Path, probe_vectors: dict[str, npt.NDArray[np.float32]]
) -> None:
    auth = world.grant()
    world.enroll("obama", auth, faces_dir)
    assert world.match(("obama", "cam-a", T0), vectors=probe_vectors) == [{"obama"}]
    world.store.revoke(auth.id, "ana", at_ms=T0)  # the entries are still in Milvus...
    assert len(world.gallery.entries_of_authorisation(auth.id)) == 2
    # ...but the very next batch cannot match them: the search filter names only authorisations in force.
    assert world.match(("obama", "cam-a", T0), vectors=probe_vectors) == [set()]
    assert world.gallery.search(
        probe_vectors["obama"][None], model_id=world.model_id, threshold=0.4, top_k=3,
        now_ms=T0, authorisation_ids=["auth_ffffffffffffffff"],
    ) == [[]]  # fmt: skip


@pytest.mark.parametrize(
    ("now", "frame", "matches"),
    [
        (T0, T0, True),
        (T0, T0 - 10 * HOUR, True),  # footage from before the grant, searched while it is in force
        (T0 + HOUR, T0, False),  # searched after it ended
        (T0, T0 + HOUR + 1, False),  # footage captured after it ended
        (T0 - 2 * HOUR, T0 - 2 * HOUR, False),  # before it began
    ],
)
def test_validity_is_enforced_at_search_time(
    world: World,
    faces_dir: Path,
    probe_vectors: dict[str, npt.NDArray[np.float32]],
    now: int,
    frame: int,
    matches: bool,
) -> None:
    auth = world.grant()
    world.enroll("obama", auth, faces_dir)
    world.clock_s[0] = now / 1000
    assert world.match(("obama", "cam-a", frame), vectors=probe_vectors) == [{"obama"} if matches else set()]


def test_suspension_rules_switch_matching_off(
    world: World, faces_dir: Path, probe_vectors: dict[str, npt.NDArray[np.float32]]
) -> None:
    world.enroll("obama", world.grant(), faces_dir)

    def add(**kw: object) -> str:
        args: dict[str, object] = {
            "zones": (), "cameras": (), "starts_at_ms": T0 - HOUR, "ends_at_ms": T0 + HOUR,
            "reason": "demonstration", "created_by": "ops", "at_ms": T0,
        }  # fmt: skip
        args.update(kw)
        return world.rules.add(**args).id  # type: ignore[arg-type]

    faces = [("obama", cam, T0) for cam in ("cam-a", "cam-b", "cam-c", "cam-x")]
    assert world.match(*faces, vectors=probe_vectors) == [{"obama"}] * 4

    zone_rule = add(zones=("station",))
    # cam-b, cam-c are in the zone; cam-x's zone is unknown, so a zone rule covers it too.
    assert world.match(*faces, vectors=probe_vectors) == [{"obama"}, set(), set(), set()]
    assert world.policy.counts.suspended == 3
    world.rules.remove(zone_rule)

    camera_rule = add(cameras=("cam-a",))
    assert world.match(*faces, vectors=probe_vectors) == [set(), {"obama"}, {"obama"}, {"obama"}]
    world.rules.remove(camera_rule)

    everywhere = add()
    assert world.match(*faces, vectors=probe_vectors) == [set()] * 4
    world.rules.remove(everywhere)

    # A past window covers footage captured in it (the demonstration), not other footage...
    add(zones=("default",), starts_at_ms=T0 - 5 * HOUR, ends_at_ms=T0 - 4 * HOUR)
    got = world.match(("obama", "cam-a", T0 - int(4.5 * HOUR)), ("obama", "cam-a", T0), vectors=probe_vectors)
    assert got == [set(), {"obama"}]
    # ...and a window in effect now covers any footage searched now.
    add(zones=("default",), starts_at_ms=T0 - 60_000, ends_at_ms=T0 + 60_000)
    assert world.match(("obama", "cam-a", T0 - 3 * HOUR), vectors=probe_vectors) == [set()]
