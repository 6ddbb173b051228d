"""frame-sampler: cameras → frames; cameras are shared among replicas by the `cameras` topic's group.

A source, not a read-process-write stage: frames are produced by an idempotent producer, and
nothing is committed (every assignment reads its camera configs from the start). A restarted
sampler therefore samples its video files again from their beginning; so that the repeated
frames carry the same ids (`<camera>@<captured_at_ms>`) and change nothing downstream, a file
camera without `start_at_ms` gets the time its config was published, which is the same on
every read of the compacted topic (except with --loop-files: a looping file plays a live camera).
"""

from __future__ import annotations

import argparse
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
from facestream.runtime.runner import dlq_headers
from facestream.runtime.service import (
    group_id,
    install_stop_handlers,
    parse_settings,
    setup_logging,
    start_health,
)
from facestream.settings import KafkaSettings, RuntimeSettings, SamplerSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer, KafkaProducer

log = logging.getLogger("facestream.frame_sampler")
NAME = "frame-sampler"


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or OneLineParser(prog=f"facestream {NAME}", description=__doc__)
    add_settings(p, KafkaSettings, RuntimeSettings, SamplerSettings)
    return p


def run(args: argparse.Namespace) -> int:
    settings = parse_settings(args, (KafkaSettings, RuntimeSettings, SamplerSettings))
    kafka: KafkaSettings = settings[KafkaSettings]
    runtime: RuntimeSettings = settings[RuntimeSettings]
    setup_logging(runtime.log_level)
    stop = threading.Event()
    install_stop_handlers(stop, runtime.shutdown_grace_s)
    health = start_health(runtime)
    frames_topic = kafka.topic_prefix + topics.FRAMES
    cameras_topic = kafka.topic_prefix + topics.CAMERAS
    dlq_topic = kafka.topic_prefix + topics.dlq(NAME)
    producer = KafkaProducer(kafka)

    def publish(frame: Frame) -> None:
        producer.produce(frames_topic, codec.FRAMES.encode(frame), key=frame.key)

    sampler: SamplerSettings = settings[SamplerSettings]
    fleet = CameraFleet(sampler, publish)
    consumer = KafkaConsumer(kafka, group_id(kafka, runtime, NAME), instance_id=runtime.replica_id)
    consumer.subscribe([cameras_topic], on_revoke=fleet.revoke)
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
