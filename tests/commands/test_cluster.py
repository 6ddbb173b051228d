"""`facestream cluster status` against the real broker: lag against partitions, idle replicas,
and which cameras each frame-sampler replica runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from facestream.cli import main
from facestream.commands.cluster import status_lines
from facestream.runtime.workloads import Workload
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.base import next_offsets
from facestream.transport.kafka import KafkaConsumer, client_config


def workload(component: str, group: str, desired: int) -> Workload:
    return Workload(component, f"fs-facestream-{component}", desired, desired, desired, desired,
                    (("FACESTREAM_GROUP_ID", group),))  # fmt: skip


def assigned(*consumers: KafkaConsumer, timeout_s: float = 60) -> None:
    """Poll until every consumer owns partitions and together they own all of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        for c in consumers:
            c.consume(10, 0.2)
        if all(c.raw.assignment() for c in consumers):
            return
        assert time.monotonic() < deadline, "group never assigned its partitions"


@pytest.fixture
def consumers() -> Iterator[list[KafkaConsumer]]:
    made: list[KafkaConsumer] = []
    yield made
    for c in made:
        c.close()


def test_lag_partitions_and_idle_replicas(
    kafka_topics: KafkaSettings, consumers: list[KafkaConsumer]
) -> None:
    settings = kafka_topics
    frames = settings.topic_prefix + topics.FRAMES
    producer = Producer(client_config(settings))
    for i in range(10):
        producer.produce(frames, f"frame {i}".encode(), key=b"one-camera")
    producer.flush(30)

    group = settings.topic_prefix + "detector"
    consumer = KafkaConsumer(settings, group)
    consumers.append(consumer)
    consumer.subscribe([frames])
    received = []
    deadline = time.monotonic() + 60
    while len(received) < 10:
        received += consumer.consume(10, 0.5)
        assert time.monotonic() < deadline, f"only {len(received)} of 10 frames arrived"
    consumer.commit(next_offsets(received[:4]))

    deployed = {"detector": workload("detector", group, 3)}
    (line,) = status_lines(settings, deployed, timeout_s=10)
    assert line["stage"] == "detector" and line["group"] == group and line["topic"] == frames
    assert line["partitions"] == 2 and line["members"] == 1 and line["idle_members"] == 0
    assert line["lag"] == 6
    assert line["replicas"]["desired"] == 3 and line["replicas_over_partitions"] == 1
    assert line["unassigned_partitions"] == []


def test_cameras_per_sampler_replica(kafka_topics: KafkaSettings, consumers: list[KafkaConsumer]) -> None:
    settings = kafka_topics
    cameras_topic = settings.topic_prefix + topics.CAMERAS
    partition_of: dict[str, int] = {}

    def delivered(err: object, msg: object) -> None:
        assert err is None
        partition_of[msg.key().decode()] = msg.partition()  # type: ignore[attr-defined]

    producer = Producer(client_config(settings))
    for i in range(8):
        camera = f"cam-{i}"
        spec = {"camera_id": camera, "url": f"/videos/{camera}.mp4"}
        producer.produce(cameras_topic, json.dumps(spec).encode(), key=camera.encode(), on_delivery=delivered)
    producer.produce(cameras_topic, b"", key=b"cam-3", on_delivery=delivered)  # removed again
    producer.flush(30)

    group = settings.topic_prefix + "sampler"
    for _ in range(2):
        c = KafkaConsumer(settings, group)
        c.subscribe([cameras_topic])
        consumers.append(c)
    assigned(*consumers)

    deployed = {"frame-sampler": workload("frame-sampler", group, 2)}
    lines = status_lines(settings, deployed, timeout_s=10)
    stage = next(li for li in lines if li["kind"] == "stage")
    assert stage["partitions"] == 4 and stage["members"] == 2 and "lag" not in stage
    members = [li for li in lines if li["kind"] == "sampler"]
    assert len(members) == 2
    owned = [set(m["partitions"]) for m in members]
    assert not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}
    live = {f"cam-{i}" for i in range(8)} - {"cam-3"}
    for m in members:
        assert m["cameras"] == sorted(c for c in live if partition_of[c] in m["partitions"])
    assert sorted(members[0]["cameras"] + members[1]["cameras"]) == sorted(live)
    assert not [li for li in lines if li["kind"] == "cameras_unassigned"]


def test_cameras_of_a_partition_nobody_owns_are_reported(kafka_topics: KafkaSettings) -> None:
    settings = kafka_topics
    producer = Producer(client_config(settings))
    producer.produce(
        settings.topic_prefix + topics.CAMERAS, b'{"camera_id":"lonely","url":"x.mp4"}', key=b"lonely"
    )
    producer.flush(30)
    deployed = {"frame-sampler": workload("frame-sampler", settings.topic_prefix + "nobody", 1)}
    lines = status_lines(settings, deployed, timeout_s=10)
    assert lines[0]["members"] == 0 and lines[0]["unassigned_partitions"] == [0, 1, 2, 3]
    assert lines[-1] == {"kind": "cameras_unassigned", "cameras": ["lonely"]}


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "cluster",
                "status",
                "--kubeconfig",
                str(tmp_path / "missing"),
                "--bootstrap-servers",
                "127.0.0.1:9",
            ]
        )
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-kubernetes" in err

    with pytest.raises(SystemExit) as exited:
        main(
            ["cluster", "status", "--no-kubernetes", "--timeout-s", "2", "--bootstrap-servers", "127.0.0.1:9"]
        )
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "127.0.0.1:9" in captured.err


def test_cli_reports_json_lines(kafka_topics: KafkaSettings, capsys: pytest.CaptureFixture[str]) -> None:
    """Without Kubernetes every stage is reported from Kafka alone (groups by their default ids)."""
    settings = kafka_topics
    code = main(["cluster", "status", "--no-kubernetes", "--bootstrap-servers", settings.bootstrap_servers,
                 "--topic-prefix", settings.topic_prefix])  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stages = {li["stage"]: li for li in lines if li["kind"] == "stage"}
    assert set(stages) == {"frame-sampler", "detector", "embedder", "matcher", "episodes", "review"}
    # the services' default group ids (runtime/service.py group_id, the faust app ids): prefixed
    assert all(li["group"] == f"{settings.topic_prefix}facestream-{name}" for name, li in stages.items())
    assert stages["detector"]["partitions"] == 2 and stages["review"]["lag"] == 0
