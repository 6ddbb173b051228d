"""The cameras one sampler replica runs, driven by the compacted `cameras` topic.

Cameras are spread over sampler replicas by Kafka's consumer-group protocol: every
replica joins one group on `cameras`, and a replica runs exactly the cameras whose configs
sit in the partitions assigned to it. Adding a replica rebalances the partitions, and with
them the cameras; no coordinator of our own is involved. The topic is never committed: on
every assignment a replica reads its partitions from the start, so it always sees the
latest config of each camera (compaction keeps one per key; an empty value removes one).

A camera stopped because its partition went away (a rebalance, a group rejoined after a broker
restart) and started again here with the same config goes on from the last frame it published:
the fleet remembers that frame's capture time per camera, and file sources resume after it. A
camera this process has not run yet asks `last_published` (the frame-sampler looks in `frames`
for the camera's last frame published under the same config) before its file is opened
(docs/delivery.md says what is guaranteed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable

from facestream.camera.sampler import Backoff, CameraWorker, FrameEncoder
from facestream.camera.sources import open_source
from facestream.camera.spec import CameraSpec
from facestream.messages import Frame
from facestream.runtime import metrics
from facestream.settings import SamplerSettings
from facestream.transport.base import TopicPartition

log = logging.getLogger(__name__)


PublishAs = Callable[[Frame, CameraSpec], bool | None]
"""Queue a frame of a camera running under a config; False when it was dropped instead."""
LastPublished = Callable[[CameraSpec], int | None]
"""The capture time of the camera's last frame published under this config, if known."""


class CameraFleet:
    def __init__(
        self, settings: SamplerSettings, publish: PublishAs, *, last_published: LastPublished | None = None
    ) -> None:
        self._settings = settings
        self._publish = publish
        self._last_published = last_published
        self._encoder = FrameEncoder(settings.jpeg_quality, settings.max_frame_width)
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s)
        self._workers: dict[str, CameraWorker] = {}
        self._partition_of: dict[str, TopicPartition] = {}
        self._published: dict[str, tuple[CameraSpec, int]] = {}
        """camera -> (its config, the capture time of its last frame handed to publish) of stopped workers."""
        self._lock = threading.Lock()

    @property
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._workers)

    def apply(self, camera_id: str, spec: CameraSpec | None, partition: TopicPartition) -> None:
        """A config record: start, restart (changed config) or stop (tombstone/disabled) a camera."""
        with self._lock:
            current = self._workers.get(camera_id)
            if current is not None and spec is not None and current.spec == spec:
                self._partition_of[camera_id] = partition
                return
            if current is not None:
                self._stop(camera_id)
            if spec is None or not spec.enabled:
                self._published.pop(camera_id, None)
                return
            before = self._published.pop(camera_id, None)
            resume_after_ms = before[1] if before is not None and before[0] == spec else None
            lookup = self._last_published
            run_as = spec
            worker = CameraWorker(
                spec,
                open_source(
                    spec,
                    default_fps=self._settings.fps,
                    realtime_files=self._settings.realtime_files,
                    loop_files=self._settings.loop_files,
                    stall_timeout_s=self._settings.stall_timeout_s,
                    live_read_batch_s=self._settings.live_read_batch_s,
                ),
                self._encoder,
                lambda frame: self._publish(frame, run_as),
                self._backoff,
                resume_after_ms=resume_after_ms,
                resume_lookup=None if lookup is None else lambda: lookup(run_as),
            )
            self._workers[camera_id] = worker
            self._partition_of[camera_id] = partition
            worker.start()
            resumed = "" if resume_after_ms is None else f", after its frame of {resume_after_ms}"
            log.info(
                "camera %s started (%s)%s", camera_id, spec.redacted_url, resumed, extra={"camera": camera_id}
            )
            metrics.CAMERAS_ASSIGNED.set(len(self._workers))

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop the cameras of partitions this replica no longer owns."""
        gone = set(partitions)
        with self._lock:
            for camera_id in [c for c, p in self._partition_of.items() if p in gone]:
                self._stop(camera_id)

    def stop_all(self) -> None:
        with self._lock:
            for camera_id in list(self._workers):
                self._stop(camera_id)

    def refresh_metrics(self) -> None:
        with self._lock:  # under the lock: a camera being stopped must not get its series back
            for worker in self._workers.values():
                worker.monitor.refresh_age()

    def _stop(self, camera_id: str) -> None:
        worker = self._workers.pop(camera_id)
        self._partition_of.pop(camera_id, None)
        worker.stop()
        if worker.last_captured_at_ms is not None:
            self._published[camera_id] = (worker.spec, worker.last_captured_at_ms)
        metrics.forget_camera(camera_id)
        for series in (
            metrics.CAMERA_GOP_SECONDS,
            metrics.CAMERA_GOP_OVER_INTERVAL,
            metrics.CAMERA_FRAMES_DECODED,
            metrics.CAMERA_FRAMES_DROPPED,
        ):
            with contextlib.suppress(KeyError):  # decoding series exist for PyAV cameras only
                series.remove(camera_id)
        metrics.CAMERAS_ASSIGNED.set(len(self._workers))
        log.info("camera %s stopped", camera_id, extra={"camera": camera_id})
