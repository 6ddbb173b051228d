"""frame-sampler: cameras → frames; cameras are shared among replicas by the `cameras` topic's group.

A source, not a read-process-write stage: frames are produced by an idempotent producer, and
nothing is committed (every assignment reads its camera configs from the start). A file camera
goes on where it stopped instead of publishing its file again: one that leaves and comes back to
the same process (a rebalance, the group rejoined after a broker restart) after the last frame
it published (camera/fleet.py); one started by a new process (a restart) or another replica after
its last frame in `frames` that was sampled under the same config (header `fs.camera.config`),
looked for among the newest --resume-lookback-records records of its partition. So that a file's
frame ids stay the same however often it is started (`<camera>@<captured_at_ms>`), a file camera
without `start_at_ms` gets the time its config was published, which is the same on every read of
the compacted topic (except with --loop-files: a looping file plays a live camera, from its start).
A frame Kafka refuses for its size is dropped and counted; the camera goes on. Started while
Kafka is down, the sampler waits for it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Sequence

from facestream import codec
from facestream.camera.fleet import CameraFleet
from facestream.camera.sources import LIVE_SCHEMES
from facestream.camera.spec import CameraSpec, parse_camera
from facestream.cliargs import OneLineParser, add_settings
from facestream.errors import ConfigError, FacestreamError, InvalidMessage
from facestream.messages import Frame
from facestream.runtime import metrics
from facestream.runtime.logs import setup_logging
from facestream.runtime.runner import dlq_headers
from facestream.runtime.service import (
    group_id,
    install_stop_handlers,
    parse_settings,
    start_health,
    wait_for_kafka,
)
from facestream.settings import KafkaSettings, RuntimeSettings, SamplerSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer, KafkaProducer, RecordRefused, last_of_key

log = logging.getLogger("facestream.frame_sampler")
NAME = "frame-sampler"


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or OneLineParser(prog=f"facestream {NAME}", description=__doc__)
    add_settings(p, KafkaSettings, RuntimeSettings, SamplerSettings)
    return p


def run(args: argparse.Namespace) -> int:
    settings = parse_settings(args, (KafkaSettings, RuntimeSettings, SamplerSettings))
    kafka = settings[KafkaSettings]
    runtime = settings[RuntimeSettings]
    setup_logging(runtime.log_level, runtime.log_format, NAME)
    stop = threading.Event()
    install_stop_handlers(stop, runtime.shutdown_grace_s)
    health = start_health(runtime)
    if not wait_for_kafka(kafka, health, stop):
        return 0  # stopped while waiting: nothing was started
    frames_topic = kafka.topic_prefix + topics.FRAMES
    cameras_topic = kafka.topic_prefix + topics.CAMERAS
    dlq_topic = kafka.topic_prefix + topics.dlq(NAME)
    producer = KafkaProducer(kafka)
    sampler = settings[SamplerSettings]
    refused_from: set[str] = set()

    def publish(frame: Frame, spec: CameraSpec) -> bool:
        """Queue the frame, named with its camera's config; False if Kafka refuses it for what it is
        (over the record limit): it would be refused on every try, so it is dropped and counted, and
        the camera goes on."""
        try:
            headers = ((CONFIG_HEADER, config_digest(spec)),)
            producer.produce(frames_topic, codec.FRAMES.encode(frame), key=frame.key, headers=headers)
            return True
        except RecordRefused as exc:
            metrics.ERRORS.labels(NAME, "refused").inc()
            camera = frame.ref.camera_id
            if camera not in refused_from:  # once per camera: a camera that refuses, refuses every frame
                refused_from.add(camera)
                log.error(
                    "camera %s: frame %s refused by Kafka (%s); dropped, as is every further refused "
                    'frame of this camera (counted in facestream_stage_errors_total{kind="refused"}): '
                    "lower --max-frame-width or --jpeg-quality",
                    camera,
                    frame.ref.frame_id,
                    exc,
                )
            return False

    def last_published(spec: CameraSpec) -> int | None:
        """Where a former sampler of this camera (this replica before a restart, or another one)
        stopped: the capture time of the camera's last frame in `frames`, if it was sampled under this
        very config. DeliveryError while Kafka does not answer (the camera waits and asks again)."""
        env = last_of_key(
            kafka, frames_topic, spec.camera_id.encode(), within=sampler.resume_lookback_records
        )
        if env is None or dict(env.headers).get(CONFIG_HEADER) != config_digest(spec):
            return None
        try:
            return codec.FRAMES.decode(env.value).ref.captured_at_ms
        except InvalidMessage:
            return None

    def revoke(partitions: list[tuple[str, int]]) -> None:
        """Stop the cameras that go, then flush what they published: the replica that gets them
        next looks in `frames` for where they stopped."""
        fleet.revoke(partitions)
        producer.raw.flush(10)

    fleet = CameraFleet(
        sampler, publish, last_published=last_published if sampler.resume_lookback_records else None
    )
    consumer = KafkaConsumer(kafka, group_id(kafka, runtime, NAME), instance_id=runtime.replica_id)
    consumer.subscribe([cameras_topic], on_revoke=revoke)
    health.set_ready(True)
    last_refresh = 0.0
    try:
        while not stop.is_set():
            for env in consumer.consume(runtime.batch_size, 1.0):
                camera_id = (env.key or b"").decode(errors="replace")
                try:
                    spec = parse_camera(env.value) if env.value else None
                    if spec is not None and spec.camera_id != camera_id:
                        raise ConfigError(f"key {camera_id!r} differs from camera_id {spec.camera_id!r}")
                except ConfigError as exc:
                    error = InvalidMessage("bad_camera_config", str(exc))
                    producer.produce(dlq_topic, env.value, key=env.key, headers=dlq_headers(NAME, env, error))
                    metrics.DLQ.labels(NAME, error.reason).inc()
                    log.warning("camera config %s/%d@%d: %s", env.topic, env.partition, env.offset, exc)
                    continue
                if spec is not None and not sampler.loop_files:
                    spec = pinned(spec, env.timestamp_ms)
                fleet.apply(camera_id, spec, (env.topic, env.partition))
            health.polled()
            metrics.LAST_POLL.labels(NAME).set(time.time())
            if time.monotonic() - last_refresh > 1.0:
                fleet.refresh_metrics()
                last_refresh = time.monotonic()
    except FacestreamError as exc:
        log.error("%s: %s", NAME, exc)
        return 1
    finally:
        health.set_ready(False)
        fleet.stop_all()
        producer.close()
        consumer.close()
    return 0


CONFIG_HEADER = "fs.camera.config"
"""Header of every frame: which config of its camera it was sampled under (`config_digest`)."""


@functools.lru_cache(maxsize=4096)
def config_digest(spec: CameraSpec) -> bytes:
    """A short name of a camera's config as run (start_at_ms pinned): frames sampled under another
    config (another file, start or rate) say nothing about where this one stands."""
    # `decoder` left at auto is left out, so configs from before it existed keep their digest.
    dump = spec.model_dump_json(exclude={"decoder"} if spec.decoder == "auto" else None)
    return hashlib.sha256(dump.encode()).hexdigest()[:16].encode()


def pinned(spec: CameraSpec, published_at_ms: int) -> CameraSpec:
    """A file camera's media time 0, when its config leaves it open: the config record's time,
    so that its frame ids do not change when the sampler starts it again. Not with
    --loop-files: a looping file stands in for a live camera, whose capture times are the
    wall clock's (pinned, a replica taking it over would send times already past)."""
    if spec.start_at_ms is not None or spec.url.lower().startswith(LIVE_SCHEMES) or published_at_ms <= 0:
        return spec
    return spec.model_copy(update={"start_at_ms": published_at_ms})


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))
