"""The runner commits only after every output is delivered, and dead-letters bad input."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from facestream import codec
from facestream.errors import DeliveryError, GalleryUnavailable, InvalidMessage
from facestream.messages import Frame, FrameRef
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.transport.memory import MemoryBroker, MemoryProducer


class Echo:
    """frames → frames; a frame whose camera is 'bad' is invalid."""

    name = "echo"

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        return [
            InvalidMessage("bad_camera", f.ref.camera_id) if f.ref.camera_id == "bad" else [f] for f in items
        ]


class FailingProducer(MemoryProducer):
    def flush(self, timeout_s: float) -> None:
        raise DeliveryError("broker did not acknowledge")


def frame(camera: str, n: int) -> Frame:
    return Frame(FrameRef(camera, f"{camera}@{n}", n, "test"), 1, 1, b"\xff\xd8")


def runner(broker: MemoryBroker, producer: MemoryProducer | None = None) -> StageRunner[Frame, Frame]:
    r: StageRunner[Frame, Frame] = StageRunner(
        Echo(),
        Route("in", codec.FRAMES, "out", codec.FRAMES, "dlq.echo"),
        broker.consumer("g"),
        producer or broker.producer(),
        policy=LoopPolicy(batch_size=10, batch_timeout_s=0, max_invalid_ratio=1.0),
    )
    r.start()
    return r


def test_outputs_then_commit_and_bad_input_to_dlq_with_origin() -> None:
    broker = MemoryBroker()
    p = broker.producer()
    for f in (frame("a", 1), frame("bad", 2), frame("a", 3)):
        p.produce("in", codec.FRAMES.encode(f), key=f.key)
    p.produce("in", b"\x00\x00", key=b"a")

    assert runner(broker).run_once() == 4

    out = [codec.FRAMES.decode(e.value).ref.frame_id for e in broker.partitions("out")[0].log]
    assert out == ["a@1", "a@3"]
    dead = sorted(broker.partitions("dlq.echo")[0].log, key=lambda e: int(e.header("fs.dlq.offset") or 0))
    assert [e.header("fs.dlq.reason") for e in dead] == [b"bad_camera", b"truncated"]
    assert [e.header("fs.dlq.offset") for e in dead] == [b"1", b"3"]
    assert {e.header("fs.dlq.topic") for e in dead} == {b"in"}
    assert broker.lag("g", "in") == 0


def test_failed_delivery_commits_nothing() -> None:
    broker = MemoryBroker()
    broker.producer().produce("in", codec.FRAMES.encode(frame("a", 1)), key=b"a")
    with pytest.raises(DeliveryError):
        runner(broker, FailingProducer(broker)).run_once()
    assert broker.lag("g", "in") == 1


class GalleryDownFor:
    """An echo stage whose gallery is unavailable for its first `failures` calls."""

    name = "echo"

    def __init__(self, failures: int) -> None:
        self.calls = 0
        self._failures = failures

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        self.calls += 1
        if self.calls <= self._failures:
            raise GalleryUnavailable("milvus: connection refused")
        return [[f] for f in items]


class Pauses(threading.Event):
    """The runner's stop event, recording each pause it is asked for instead of sleeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.asked.append(timeout)
        return self.is_set()


def test_the_gallery_wait_doubles_up_to_retry_max_s_and_then_processes_the_same_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    broker.producer().produce("in", codec.FRAMES.encode(frame("a", 1)), key=b"a")
    stage = GalleryDownFor(failures=6)
    pauses = Pauses()
    r: StageRunner[Frame, Frame] = StageRunner(
        stage,
        Route("in", codec.FRAMES, "out", codec.FRAMES, "dlq.echo"),
        broker.consumer("g"),
        broker.producer(),
        policy=LoopPolicy(batch_size=10, batch_timeout_s=0, retry_max_s=3.0),
        stop=pauses,
    )
    r.start()
    assert r.run_once() == 1
    assert [p for p in pauses.asked if p >= 0.5] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert stage.calls == 7
    waits = [r for r in caplog.records if "gallery unavailable" in r.getMessage()]
    assert len(waits) == 6
    assert {getattr(r, "stage", None) for r in waits} == {"echo"}  # a field of JSON logs
    assert [codec.FRAMES.decode(e.value).ref.frame_id for e in broker.partitions("out")[0].log] == ["a@1"]
    assert broker.lag("g", "in") == 0
