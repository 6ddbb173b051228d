"""Synthetic cameras for the pipeline's load test: people from ../shared/data/faces walking and
zooming over changing backgrounds, published to `frames` as real Frame messages in real time.

Why synthetic rather than the sampler's video files: the mix of scenes (how many frames hold an
enrolled person, none, several, strangers) must be set, not whatever a clip happens to hold, and
the frames' capture time must be the wall time at publish, so the latency measured from it is
the pipeline's own. The frame-sampler's cost per camera is measured by the sampler part.

Every face is cut from the photos once (the detector finds it) and labelled by its own
embedding against the enrolled people's photos, so a "stranger" is one the gallery cannot match.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from facestream import codec
from facestream.imaging import encode_jpeg
from facestream.messages import Frame, FrameRef
from facestream.settings import KafkaSettings
from facestream.transport.kafka import KafkaProducer
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder

Image = npt.NDArray[np.uint8]
FRAME_SIZE = (1280, 720)
"""Width and height of a synthetic camera frame: a 720p city camera after sampling."""
SAME_PERSON = 0.40
"""Cosine at or above which a cut-out face counts as an enrolled person (the matcher's threshold)."""


@dataclass(frozen=True)
class Sprite:
    """A head-and-shoulders cut-out of one photo."""

    image: Image
    identity: str | None
    """The enrolled person it shows; None for someone not enrolled."""
    face_px: float
    """Height of the face box in the cut-out, pixels."""
    source: str


@dataclass(frozen=True)
class Mix:
    """Shares of scenes (each a few frames long) on every camera; they add up to 1."""

    enrolled: float = 0.45
    """One enrolled person."""
    several: float = 0.20
    """Two or three people, at least one enrolled, at least one not (where the photos have one)."""
    unenrolled: float = 0.15
    """One person who is not enrolled."""
    none: float = 0.20
    """Nobody: background only."""

    def kinds(self, segments: int) -> list[str]:
        """`segments` scene kinds in these shares (largest remainder), in a fixed order."""
        shares = {"enrolled": self.enrolled, "several": self.several, "unenrolled": self.unenrolled}
        shares["none"] = self.none
        exact = {k: v * segments for k, v in shares.items()}
        counts = {k: int(v) for k, v in exact.items()}
        for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[
            : segments - sum(counts.values())
        ]:
            counts[k] += 1
        return [k for k, n in counts.items() for _ in range(n)]


@dataclass(frozen=True)
class RenderedFrame:
    jpeg: bytes
    width: int
    height: int
    people: tuple[str | None, ...]
    """Who was placed in it (None: not enrolled)."""


@dataclass
class Camera:
    camera_id: str
    frames: list[RenderedFrame] = field(default_factory=list)


def cut_sprites(
    faces_dir: Path, finder: FaceFinder, embedder: FaceEmbedder, enrolled: Sequence[str]
) -> list[Sprite]:
    """Every usable face of every photo (each scene resolution of the same photo once), cut out
    with some context and labelled by embedding against the enrolled people's photos."""
    known: list[tuple[str, npt.NDArray[np.float32]]] = []
    for identity in enrolled:
        for photo in sorted((faces_dir / "enroll").glob(f"{identity}_*.jpg")):
            usable = [obs for obs in finder.find(_read(photo)) if obs.usable]
            if usable:  # the person is the dominant face, as enrollment takes it
                dominant = max(usable, key=lambda obs: obs.bbox.area)
                known.append((identity, embedder.embed(dominant.aligned[None])[0]))
    photos = [
        p
        for sub in ("enroll", "probe", "scenes")
        for p in sorted((faces_dir / sub).glob("*.jpg"))
        if not (sub == "scenes" and p.stem.startswith("obama_") and p.stem != "obama_720p")
    ]
    sprites = []
    for photo in photos:
        image = _read(photo)
        for obs in finder.find(image):
            if not obs.usable:
                continue
            vector = embedder.embed(obs.aligned[None])[0]
            best_identity, best = None, -1.0
            for identity, ref in known:
                score = float(vector @ ref)
                if score > best:
                    best_identity, best = identity, score
            box = obs.bbox
            side_x, side_y = 0.8 * box.width, 0.9 * box.height
            x1, y1 = int(max(0, box.x1 - side_x)), int(max(0, box.y1 - side_y))
            x2 = int(min(image.shape[1], box.x2 + side_x))
            y2 = int(min(image.shape[0], box.y2 + 1.3 * box.height))
            sprites.append(
                Sprite(
                    image=np.ascontiguousarray(image[y1:y2, x1:x2]),
                    identity=best_identity if best >= SAME_PERSON else None,
                    face_px=box.height,
                    source=f"{photo.parent.name}/{photo.name}",
                )
            )
    return sprites


def _read(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return np.asarray(image, np.uint8)


def render_cameras(
    sprites: Sequence[Sprite],
    count: int,
    *,
    segments: int,
    frames_per_segment: int,
    mix: Mix | None = None,
    size: tuple[int, int] = FRAME_SIZE,
    seed: int = 7,
) -> list[Camera]:
    """`count` cameras, each `segments` scenes of `frames_per_segment` frames, JPEG-encoded once
    (publishing then costs only the message); the scene kinds hold `mix`'s shares per camera."""
    mix = mix or Mix()
    enrolled = [s for s in sprites if s.identity is not None]
    strangers = [s for s in sprites if s.identity is None] or enrolled
    if not enrolled:
        raise ValueError("no photo of an enrolled person gave a usable face")
    cameras = []
    for c in range(count):
        rng = np.random.default_rng(seed + c)
        camera = Camera(f"cam-{c:03d}")
        kinds = mix.kinds(segments)
        rng.shuffle(kinds)
        for kind in kinds:
            if kind == "enrolled":
                people = [enrolled[rng.integers(len(enrolled))]]
            elif kind == "unenrolled":
                people = [strangers[rng.integers(len(strangers))]]
            elif kind == "several":
                people = [enrolled[rng.integers(len(enrolled))], strangers[rng.integers(len(strangers))]]
                if rng.random() < 0.5:
                    people.append(sprites[rng.integers(len(sprites))])
            else:
                people = []
            camera.frames += _segment(people, frames_per_segment, size, rng)
        cameras.append(camera)
    return cameras


def _background(width: int, height: int, rng: np.random.Generator) -> Image:
    """A street-ish scene: a gradient, some blocks and discs, a little noise."""
    a, b = rng.integers(30, 220, 3), rng.integers(30, 220, 3)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    canvas = (a * (1 - ramp) + b * ramp).astype(np.float32)
    canvas = np.repeat(canvas, height, axis=0)
    image = np.ascontiguousarray(canvas.astype(np.uint8))
    for _ in range(int(rng.integers(6, 14))):
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.6:
            w, h = int(rng.integers(40, 300)), int(rng.integers(40, 300))
            cv2.rectangle(image, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(image, (x, y), int(rng.integers(15, 120)), color, -1)
    noise = rng.normal(0, 6, image.shape).astype(np.int16)
    return np.asarray(np.clip(image.astype(np.int16) + noise, 0, 255), np.uint8)


def _segment(
    people: Sequence[Sprite], frames: int, size: tuple[int, int], rng: np.random.Generator
) -> list[RenderedFrame]:
    """One scene: the background drifts and its light changes; each person crosses their own lane
    while their face grows or shrinks (as if walking towards or away from the camera)."""
    width, height = size
    drift = int(rng.integers(4, 16))
    wide = _background(width + drift * frames + 1, height, rng)
    light = rng.uniform(0.8, 1.2, 2)
    lanes = max(1, len(people))
    paths = []
    for lane, sprite in enumerate(people):
        face_from, face_to = rng.uniform(0.13, 0.30, 2) * height
        x_from, x_to = (lane + rng.uniform(0.05, 0.6, 2)) * width / lanes
        y_from, y_to = rng.uniform(0.05, 0.45, 2) * height
        paths.append((sprite, face_from, face_to, x_from, x_to, y_from, y_to))
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        window = wide[:, i * drift : i * drift + width]
        frame = np.asarray(cv2.convertScaleAbs(window, alpha=light[0] + (light[1] - light[0]) * t), np.uint8)
        for sprite, face_from, face_to, x_from, x_to, y_from, y_to in paths:
            scale = (face_from + (face_to - face_from) * t) / sprite.face_px
            _paste(frame, sprite.image, scale, x_from + (x_to - x_from) * t, y_from + (y_to - y_from) * t)
        out.append(RenderedFrame(encode_jpeg(frame, 85), width, height, tuple(s.identity for s in people)))
    return out


def _paste(frame: Image, sprite: Image, scale: float, x: float, y: float) -> None:
    h, w = max(1, int(sprite.shape[0] * scale)), max(1, int(sprite.shape[1] * scale))
    resized = cv2.resize(sprite, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x0, y0 = int(x), int(y)
    x1, y1 = min(frame.shape[1], x0 + w), min(frame.shape[0], y0 + h)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = resized[: y1 - y0, : x1 - x0]


def frame_message(camera_id: str, rendered: RenderedFrame, captured_at_ms: int) -> Frame:
    """The Frame a sampler would publish for it: its id is `<camera>@<capture ms>`."""
    ref = FrameRef(camera_id, f"{camera_id}@{captured_at_ms}", captured_at_ms, f"synthetic://{camera_id}")
    return Frame(ref, rendered.width, rendered.height, rendered.jpeg)


class Publisher:
    """Publishes the cameras' frames to `frames` through facestream's codec and producer, keyed by
    camera, each frame stamped with the wall time at publish (strictly increasing per camera)."""

    def __init__(self, kafka: KafkaSettings, cameras: Sequence[Camera]) -> None:
        self.topic = kafka.topic_prefix + "frames"
        self.cameras = list(cameras)
        self._producer = KafkaProducer(kafka)
        self._next_frame = [0] * len(self.cameras)
        self._last_ms = [0] * len(self.cameras)
        self.published = 0
        self.late_ms: list[float] = []
        """How late each real-time frame was published against its schedule (wall ms)."""

    def _publish(self, c: int) -> None:
        camera = self.cameras[c]
        rendered = camera.frames[self._next_frame[c] % len(camera.frames)]
        self._next_frame[c] += 1
        ms = max(int(time.time() * 1000), self._last_ms[c] + 1)
        self._last_ms[c] = ms
        frame = frame_message(camera.camera_id, rendered, ms)
        self._producer.produce(self.topic, codec.FRAMES.encode(frame), key=frame.key)
        self.published += 1

    def burst(self, count: int, on_publish: Callable[[], None] | None = None) -> None:
        """`count` frames as fast as the producer takes them, cameras in turn; then flushed."""
        for n in range(count):
            self._publish(n % len(self.cameras))
            if on_publish is not None:
                on_publish()
        self._producer.flush(60)

    def realtime(self, fps: float, seconds: float, stop: threading.Event | None = None) -> None:
        """Every camera at `fps` for `seconds` (wall), their phases spread evenly over a frame
        interval; a frame due while the last was still being sent goes out at once, counted late."""
        stop = stop or threading.Event()
        start = time.monotonic()
        period = 1.0 / fps
        due = [(start + c * period / len(self.cameras), c) for c in range(len(self.cameras))]
        heapq.heapify(due)
        while not stop.is_set():
            at, c = heapq.heappop(due)
            if at - start >= seconds:
                break
            wait = at - time.monotonic()
            if wait > 0:
                stop.wait(wait)
            self.late_ms.append(max(0.0, (time.monotonic() - at) * 1000))
            self._publish(c)
            heapq.heappush(due, (at + period, c))
        self._producer.flush(30)

    def close(self) -> None:
        self._producer.close()
