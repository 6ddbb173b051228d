"""Services log one JSON object a line when asked (the chart asks), with the fields a log store
searches by: the service, and the stage or camera where the code that logs knows it."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from facestream.runtime.logs import ServiceField, json_formatter
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
