"""Services log one JSON object a line when asked (the chart asks), with the fields a log store
searches by: the service, and the stage, camera or partition where the code that logs knows it."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from facestream import codec
from facestream.errors import InvalidMessage
from facestream.messages import Frame, FrameRef
from facestream.runtime.logs import ServiceField, json_formatter
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.transport.memory import MemoryBroker
from tests.integration.processes import ServiceProcess, wait_until


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.subprocess
def test_a_service_waiting_for_kafka_logs_json_lines_naming_itself_and_the_broker(tmp_path: Path) -> None:
    address = f"127.0.0.1:{closed_port()}"
    proc = ServiceProcess(
        "embedder",
        ["--bootstrap-servers", address, "--metrics-port", "0", "--log-format", "json"],
        tmp_path / "embedder.log",
    )
    try:
        wait_until(lambda: "waiting for Kafka" in proc.log(), 60, "the wait for Kafka logged", proc)
    finally:
        assert proc.terminate() == 0
    records = [json.loads(line) for line in proc.log().splitlines() if line.strip()]  # each line is JSON
    assert {r["service"] for r in records} == {"embedder"}
    waiting = [r for r in records if "waiting for Kafka" in r["message"]]
    assert waiting[0]["level"] == "WARNING"
    assert address in waiting[0]["message"]
    assert waiting[0]["time"].endswith("+00:00")  # UTC, whatever the host's zone


def test_context_fields_and_awkward_messages_stay_one_json_line() -> None:
    record = logging.LogRecord(
        "facestream.camera", logging.WARNING, __file__, 1, 'camera %s: "%s"', None, None
    )
    record.args = ("gate-3", "rtsp://x\nrefused")
    record.camera = "gate-3"
    ServiceField("frame-sampler").filter(record)
    line = json_formatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == 'camera gate-3: "rtsp://x\nrefused"'
    assert (parsed["camera"], parsed["service"], parsed["logger"]) == (
        "gate-3",
        "frame-sampler",
        "facestream.camera",
    )


class RejectCamera:
    """frames -> frames; a frame of camera 'bad' is invalid (dead-lettered)."""

    name = "echo"

    def process(self, items: Sequence[Frame]) -> list[list[Frame] | InvalidMessage]:
        return [InvalidMessage("bad_camera", "no") if f.ref.camera_id == "bad" else [f] for f in items]


def test_a_dead_letter_is_logged_with_its_stage_topic_partition_and_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stage comes from the runner's logger, the place from the log call: both must reach the
    record (Python 3.11's LoggerAdapter kept only its own fields and dropped the call's)."""
    broker = MemoryBroker(4)
    producer = broker.producer()
    for camera, n in (("a", 1), ("bad", 2)):
        f = Frame(FrameRef(camera, f"{camera}@{n}", n, "test"), 1, 1, b"\xff\xd8")
        producer.produce("in", codec.FRAMES.encode(f), key=f.key)
    where = next(
        (p, e.offset) for p, part in enumerate(broker.partitions("in")) for e in part.log if e.key == b"bad"
    )
    runner: StageRunner[Frame, Frame] = StageRunner(
        RejectCamera(),
        Route("in", codec.FRAMES, "out", codec.FRAMES, "dlq.echo"),
        broker.consumer("g"),
        broker.producer(),
        policy=LoopPolicy(batch_size=10, batch_timeout_s=0, max_invalid_ratio=1.0),
    )
    runner.start()
    with caplog.at_level(logging.WARNING, logger="facestream.runtime.runner"):
        assert runner.run_once() == 2
    (record,) = [r for r in caplog.records if "dlq.echo" in r.getMessage()]
    parsed = json.loads(json_formatter().format(record))
    assert (parsed["stage"], parsed["topic"], parsed["partition"], parsed["offset"]) == ("echo", "in", *where)
