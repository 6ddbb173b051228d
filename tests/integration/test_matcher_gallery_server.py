"""The matcher service on Kafka with its gallery on a real Milvus server (HNSW), shared with the
CLI as in a deployment (Milvus Lite cannot be: it has one owner). Entries enrolled while the
matcher runs match at once; `authorisation revoke` erases a revoked authorisation's entries
from the server and the next face of that person matches nothing; an authorisation that runs
out matches nothing from then on, and the matcher's own sweep erases its entries.

The CLI helpers reach the same collection through FACESTREAM_GALLERY_* and FACESTREAM_STATE_DIR;
the matcher gets the same settings as flags."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from facestream import codec
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.gallery.store import Gallery
from facestream.messages import Embedding, FrameRef
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.accountability import audit_records, enroll, grant_authorisation, run_cli
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.fixtures.media import embedding_of
from tests.fixtures.milvus import GalleryBackend
from tests.integration.processes import kafka_args, services, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("accountability_env")]

CAMERA = "gate"
SHORT_S = 40
"""How long the short authorisation lasts: its person must be seen matching before it ends."""
PROBES = {
    "obama": "probe/obama.jpg",
    "biden": "enroll/biden_1.jpg",  # biden_2 is the one enrolled
    "alex_lacamoire": "probe/alex_lacamoire.jpg",
}


@dataclasses.dataclass
class Camera:
    """Puts people's faces on the embeddings topic, one frame each, and reads who matched."""

    settings: KafkaSettings
    faces: dict[str, Embedding]
    shown: int = 0

    def show(self, *people: str) -> list[str]:
        """A frame of each person, in this order on one camera (one partition); their frame ids."""
        producer = KafkaProducer(self.settings)
        ids = []
        for who in people:
            self.shown += 1
            at = now_ms()
            ref = FrameRef(CAMERA, f"{CAMERA}@{at}#{self.shown}", at, "test.mp4")
            face = dataclasses.replace(self.faces[who], ref=ref)
            producer.produce(self.topic, codec.EMBEDDINGS.encode(face), key=face.key)
            ids.append(ref.frame_id)
        producer.flush(15)
        return ids

    @property
    def topic(self) -> str:
        return self.settings.topic_prefix + topics.EMBEDDINGS

    def matched(self, hits: int) -> dict[str, list[str]]:
        """frame id → the identities of its hits, once at least `hits` hits are out (and any extra)."""
        out: dict[str, list[str]] = {}
        for envelope in read_topic(self.settings, self.settings.topic_prefix + topics.HITS, hits, 120):
            hit = codec.HITS.decode(envelope.value)
            out.setdefault(hit.ref.frame_id, []).append(hit.identity)
        return out

    def all_consumed(self) -> bool:
        ends = {p: e for p, e in end_offsets(self.settings, self.topic).items() if e > 0}
        group = self.settings.topic_prefix + "facestream-matcher"
        return committed_offsets(self.settings, group, self.topic) == ends


@pytest.fixture
def shared_gallery(
    gallery_backend: GalleryBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GalleryBackend:
    """The test's collection and state directory, for the CLI helpers (they pass only --gallery)."""
    monkeypatch.setenv("FACESTREAM_GALLERY_COLLECTION", gallery_backend.collection)
    monkeypatch.setenv("FACESTREAM_GALLERY_INDEX_TYPE", gallery_backend.index_type)
    monkeypatch.setenv("FACESTREAM_STATE_DIR", str(tmp_path / "state"))
    return gallery_backend


def entries_on_server(backend: GalleryBackend) -> list[tuple[str, str]]:
    """(authorisation, identity) of every entry the server holds, read by a client of its own."""
    gallery = Gallery(backend.settings())
    try:
        return sorted((e.authorisation_id, e.identity) for e in gallery.entries())
    finally:
        gallery.close()


def iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize("gallery_backend", ["server"], indirect=True)
def test_revoked_and_expired_entries_stop_matching_and_are_erased_from_the_server(
    kafka_topics: KafkaSettings,
    shared_gallery: GalleryBackend,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    faces_dir: Path,
    tmp_path: Path,
) -> None:
    uri, state, enrolled = shared_gallery.location, tmp_path / "state", faces_dir / "enroll"
    wanted, kept = grant_authorisation(uri, case="WANTED"), grant_authorisation(uri, case="KEPT")
    assert enroll(uri, "obama", wanted, enrolled / "obama_1.jpg", enrolled / "obama_2.jpg").status == 0
    assert enroll(uri, "biden", kept, enrolled / "biden_2.jpg").status == 0
    seen = FrameRef(CAMERA, f"{CAMERA}@0", 0, "test.mp4")  # replaced when shown
    camera = Camera(
        kafka_topics,
        {who: embedding_of(finder, embedder, faces_dir / photo, seen) for who, photo in PROBES.items()},
    )
    with services(tmp_path) as running:
        matcher = running.start(
            "matcher", *kafka_args(kafka_topics), "--metrics-port", "0", *shared_gallery.flags(),
            "--state-dir", str(state), "--episodes-data-dir", str(tmp_path / "faust"),
            "--purge-interval-s", "2",
        )  # fmt: skip
        matcher.wait_ready(120)

        # Granted and enrolled by the CLI while the matcher runs: it matches with no restart.
        ends = now_ms() + SHORT_S * 1000
        short = grant_authorisation(uri, case="SHORT", valid_until=iso(ends))
        assert enroll(uri, "alex_lacamoire", short, enrolled / "alex_lacamoire_1.jpg").status == 0
        first = camera.show("obama", "biden", "alex_lacamoire")
        assert camera.matched(3) == {first[0]: ["obama"], first[1]: ["biden"], first[2]: ["alex_lacamoire"]}

        revoked = run_cli("authorisation", "revoke", "--gallery", uri, wanted)
        assert revoked.status == 0, revoked.stderr
        assert revoked.json()[0]["purged"] is True
        assert entries_on_server(shared_gallery) == sorted([(kept, "biden"), (short, "alex_lacamoire")])
        second = camera.show("obama", "biden")  # biden's hit comes after obama's face was searched
        assert camera.matched(4).keys() == {*first, second[1]}

        while now_ms() <= ends:  # let the short authorisation run out
            time.sleep(0.2)
        third = camera.show("alex_lacamoire", "biden")
        assert camera.matched(5).keys() == {*first, second[1], third[1]}
        wait_until(
            lambda: AuthorisationStore(state).get(short).purged_at_ms is not None,
            90,
            "the sweep's purge",
            matcher,
        )
        assert entries_on_server(shared_gallery) == [(kept, "biden")]

        wait_until(camera.all_consumed, 60, "every face consumed", matcher)
        hits = camera.matched(5)
        assert hits == {
            first[0]: ["obama"],
            first[1]: ["biden"],
            first[2]: ["alex_lacamoire"],
            second[1]: ["biden"],
            third[1]: ["biden"],
        }  # nothing lost, nothing twice
        assert matcher.terminate() == 0, matcher.tail()

    purges = [r for r in audit_records(state) if r.action == "gallery.purge" and r.objects["complete"]]
    assert {(r.authorisation_id, r.objects["reason"]) for r in purges if r.objects["entries"]} == {
        (wanted, "revoked"),
        (short, "expired"),
    }
    assert ("facestream", short) in {(r.actor, r.authorisation_id) for r in purges}  # the matcher's sweep
