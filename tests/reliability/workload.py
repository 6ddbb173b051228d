"""A known camera workload, what it must produce, and a census of what it did produce.

Two file cameras (videos made from the shared photos) with three episodes each, several
enrolled people, a Milvus server gallery. `expected` runs the very same stages in this
process (the embedded mode) over the same frames; `Census` reads every topic of a Kafka run
and counts ids, so a test can say "0 lost, 0 duplicated" per topic:

- frames: every expected frame id at least once, no other id (a restarted sampler repeats
  frames, with their ids);
- faces, embeddings, hits: each input message yields its outputs exactly once, so an output
  id appears exactly as often as the input message it came from (transactions);
- matches: every expected candidate id exactly once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream import codec
from facestream.accountability.audit_keys import AuditSettings
from facestream.accountability.matching import open_matching
from facestream.accountability.settings import AccountabilitySettings, PolicySettings
from facestream.camera.sampler import FrameEncoder
from facestream.camera.spec import CameraSpec
from facestream.messages import Candidate
from facestream.runtime.embedded import EmbeddedPipeline, identify
from facestream.sample import make_camera_video
from facestream.settings import DetectorSettings, GallerySettings, KafkaSettings, MatcherSettings, Settings
from facestream.stages.detect import DetectStage
from facestream.stages.embed import EmbedStage
from facestream.transport import topics
from facestream.transport.base import Envelope
from facestream.transport.kafka import KafkaConsumer
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from tests.fixtures.kafka import committed_offsets, end_offsets, read_topic
from tests.integration.processes import cli, kafka_args

FPS = 2.0
EPISODE_GAP_S = 3.0
T0_MS = 1_790_000_000_000
"""start_at_ms of the first camera (a fixed time inside the authorisations' validity)."""
GRANT = "--case REL-1 --basis test --purpose wanted --issued-by pytest --valid-from 2000-01-01T00:00:00Z"


def enroll_people(gallery_uri: str, state_dir: Path, model_dir: Path, faces_dir: Path) -> None:
    """Four people, under one authorisation granted for it, into a Milvus server gallery."""
    common = ["--gallery", gallery_uri, "--state-dir", str(state_dir), "--actor", "pytest"]
    granted = cli("authorisation", "grant", *common, *GRANT.split(), "--valid-until", "2099-01-01T00:00:00Z")
    authorisation = json.loads(granted)["id"]
    for identity in ("obama", "biden", "alex_lacamoire", "rose_leslie"):
        photos = sorted((faces_dir / "enroll").glob(f"{identity}_*.jpg"))
        cli("gallery", "enroll", *common, "--identity", identity, "--authorisation", authorisation,
            "--model-dir", str(model_dir), *(str(p) for p in photos))  # fmt: skip


def camera_videos(faces_dir: Path, out: Path, rounds: int = 1) -> dict[str, Path]:
    """Three episodes per camera, separated by 4 s of background (more than the episode gap);
    the last episode of each shows again someone of the first, so replays of the first
    episode arrive after a later one of the same person. `rounds` plays the three that many
    times (about 24 s of video a round, with the gaps)."""
    probe, scenes = faces_dir / "probe", faces_dir / "scenes"
    playlists = {
        "gate": [probe / "obama.jpg", probe / "alex_lacamoire.jpg", probe / "obama.jpg"],
        "square": [
            scenes / "two_people.jpg",
            scenes / "kit_harington_and_rose_leslie.jpg",
            scenes / "obama_and_biden.jpg",
        ],
    }
    return {
        camera: make_camera_video(photos * rounds, out / f"{camera}.mp4", seconds_each=4, gap_seconds=4)
        for camera, photos in playlists.items()
    }


def camera_configs(videos: Mapping[str, Path]) -> list[dict[str, Any]]:
    """`gate` fixes its media time 0; `square` leaves it to the sampler (its config's time)."""
    return [
        {"camera_id": "gate", "url": str(videos["gate"]), "fps": FPS, "start_at_ms": T0_MS},
        {"camera_id": "square", "url": str(videos["square"]), "fps": FPS},
    ]


def put_cameras(settings: KafkaSettings, cameras: Sequence[dict[str, Any]], path: Path) -> list[CameraSpec]:
    """Publish the configs; returns them as the sampler will run them, start_at_ms pinned to
    the config record's time where the config left it open."""
    path.write_text(json.dumps(list(cameras)))
    cli("cameras", "put", "--file", str(path), *kafka_args(settings))
    records = read_topic(settings, settings.topic_prefix + topics.CAMERAS, len(cameras), 30)
    published_at = {(e.key or b"").decode(): e.timestamp_ms for e in records}
    return [
        CameraSpec.model_validate({**c, "start_at_ms": c.get("start_at_ms") or published_at[c["camera_id"]]})
        for c in cameras
    ]


@dataclass(frozen=True)
class Expected:
    frame_ids: frozenset[str]
    face_ids: frozenset[str]
    hit_ids: frozenset[str]
    candidates: tuple[Candidate, ...]

    @property
    def candidate_ids(self) -> frozenset[str]:
        return frozenset(c.candidate_id for c in self.candidates)

    def candidate(self, camera_id: str, identity: str, nth: int) -> Candidate:
        """The `nth` (0-based, by time) candidate of `identity` on `camera_id`."""
        found = sorted(
            (c for c in self.candidates if c.ref.camera_id == camera_id and c.identity == identity),
            key=lambda c: c.ref.captured_at_ms,
        )
        return found[nth]


def expected(
    specs: Sequence[CameraSpec],
    gallery_uri: str,
    state_dir: Path,
    finder: FaceFinder,
    embedder: FaceEmbedder,
) -> Expected:
    """What the services must produce: the same stages, in this process, over the same frames."""
    settings = Settings(
        GallerySettings(gallery=gallery_uri),
        MatcherSettings(episode_gap_s=EPISODE_GAP_S),
        PolicySettings(),
        AccountabilitySettings(state_dir=state_dir),
        AuditSettings(),
    )
    matching = open_matching(settings)
    detector = DetectorSettings()
    try:
        pipeline = EmbeddedPipeline(
            DetectStage(
                finder, max_frame_pixels=detector.max_frame_pixels, thumbnail_px=detector.thumbnail_px
            ),
            EmbedStage(embedder),
            matching.stage,
            episode_gap_ms=round(EPISODE_GAP_S * 1000),
        )
        failures: list[Any] = []
        found = tuple(identify(pipeline, specs, default_fps=FPS, encoder=FrameEncoder(), failures=failures))
        assert not failures, failures
    finally:
        matching.close()

    def logged(topic: str) -> list[bytes]:
        return [e.value for p in pipeline.broker.partitions(topic) for e in p.log]

    return Expected(
        frame_ids=frozenset(codec.FRAMES.decode(v).ref.frame_id for v in logged(topics.FRAMES)),
        face_ids=frozenset(codec.FACES.decode(v).face_id for v in logged(topics.FACES)),
        hit_ids=frozenset(codec.HITS.decode(v).hit_id for v in logged(topics.HITS)),
        candidates=found,
    )


@dataclass(frozen=True)
class Census:
    """How often each id appears in each topic of one Kafka run (read_committed, from the start)."""

    frames: Counter[str]
    faces: Counter[str]
    embeddings: Counter[str]
    hits: Counter[str]
    hit_faces: Mapping[str, str]
    """hit id -> the face id it came from."""
    matches: Counter[str]
    dead_letters: int

    @classmethod
    def read(cls, settings: KafkaSettings) -> Census:
        prefix = settings.topic_prefix
        dead = [prefix + topics.dlq(stage) for stage in topics.STAGES]
        read = read_all(settings, [prefix + t for t in CENSUS_TOPICS] + dead)

        def values(topic: str) -> list[bytes]:
            return [e.value for e in read[prefix + topic]]

        hits = [codec.HITS.decode(v) for v in values(topics.HITS)]
        return cls(
            frames=Counter(codec.FRAMES.decode(v).ref.frame_id for v in values(topics.FRAMES)),
            faces=Counter(codec.FACES.decode(v).face_id for v in values(topics.FACES)),
            embeddings=Counter(codec.EMBEDDINGS.decode(v).face_id for v in values(topics.EMBEDDINGS)),
            hits=Counter(h.hit_id for h in hits),
            hit_faces={h.hit_id: f"{h.ref.frame_id}/{h.face_index}" for h in hits},
            matches=Counter(codec.MATCHES.decode(v).candidate_id for v in values(topics.MATCHES)),
            dead_letters=sum(len(read[name]) for name in dead),
        )

    def problems(self, want: Expected) -> list[str]:
        """Every way this run differs from exactly-once delivery of `want`; empty when none."""
        out: list[str] = []

        def compare(what: str, got: Iterable[str], wanted: frozenset[str]) -> None:
            got = set(got)
            if got != wanted:
                out.append(f"{what}: lost {sorted(wanted - got)[:5]}, unexpected {sorted(got - wanted)[:5]}")

        def once_per_input(
            what: str, outputs: Counter[str], inputs: Counter[str], source: Mapping[str, str]
        ) -> None:
            wrong = {o: (n, inputs[source[o]]) for o, n in outputs.items() if n != inputs[source[o]]}
            if wrong:
                out.append(f"{what}: output id -> (copies, input copies) {dict(list(wrong.items())[:5])}")

        compare("frames", self.frames, want.frame_ids)
        compare("faces", self.faces, want.face_ids)
        compare("embeddings", self.embeddings, want.face_ids)
        compare("hits", self.hits, want.hit_ids)
        compare("matches", self.matches, want.candidate_ids)
        frame_of = {face: face.rsplit("/", 1)[0] for face in self.faces}
        once_per_input("faces per frames message", self.faces, self.frames, frame_of)
        once_per_input(
            "embeddings per faces message", self.embeddings, self.faces, {f: f for f in self.embeddings}
        )
        once_per_input("hits per embeddings message", self.hits, self.embeddings, self.hit_faces)
        duplicated = {c: n for c, n in self.matches.items() if n != 1}
        if duplicated:
            out.append(f"matches: candidate ids more than once {duplicated}")
        if self.dead_letters:
            out.append(f"{self.dead_letters} dead letter(s)")
        return out


CENSUS_TOPICS = (topics.FRAMES, topics.FACES, topics.EMBEDDINGS, topics.HITS, topics.MATCHES)


def read_all(settings: KafkaSettings, names: Sequence[str], idle_s: float = 3.0) -> dict[str, list[Envelope]]:
    """Every message of these topics (read_committed, from the start), once nothing new came for `idle_s`."""
    consumer = KafkaConsumer(settings, f"census-{uuid.uuid4().hex}")
    out: dict[str, list[Envelope]] = {name: [] for name in names}
    try:
        consumer.subscribe(list(names))
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle_s:
            for env in consumer.consume(500, 0.5):
                out[env.topic].append(env)
                last_new = time.monotonic()
        return out
    finally:
        consumer.close()


def wait_for(
    check: Any, timeout_s: float, what: str, interval_s: float = 0.5, settings: KafkaSettings | None = None
) -> None:
    """Poll `check()`; on timeout fail, saying where every topic and group stood (with `settings`)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{progress(settings) if settings else ''}")
        time.sleep(interval_s)


GROUPS = (
    ("facestream-detector", topics.FRAMES),
    ("facestream-embedder", topics.FACES),
    ("facestream-matcher", topics.EMBEDDINGS),
    ("facestream-episodes", topics.HITS),
)


def progress(settings: KafkaSettings) -> str:
    """Each stage's committed offsets against its input's end offsets: where a pipeline stands."""
    prefix = settings.topic_prefix
    lines = []
    for group, topic in GROUPS:
        try:
            ends = end_offsets(settings, prefix + topic)
            committed = committed_offsets(settings, prefix + group, prefix + topic)
            lines.append(f"{group}: committed {committed} of {topic} {ends}")
        except Exception as exc:  # a diagnostic only
            lines.append(f"{group}: {exc}")
    matches = end_offsets(settings, prefix + topics.MATCHES)
    return "\n".join([*lines, f"matches: {matches}"])
