"""A broker and facestream services as real processes, for the load tests (soak.py, the scale
report's pipeline part): start them, read their metrics and clocks, stop them, leak none.

The services are `facestream <service>` processes, exactly as deployed (no in-process shortcut),
so what is measured here includes everything a deployment pays: the Kafka clients, the
transactions, the codec, the metrics server, faust in the matcher.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from facestream.settings import KafkaSettings
from facestream.transport.groups import inspector
from facestream.transport.kafka import client_config, ensure_topics
from facestream.transport.topics import catalogue

from .clocks import tree_cpu_s, tree_rss_mb

REPO = Path(__file__).resolve().parents[2]
FACESTREAM = Path(sys.executable).with_name("facestream")
ENROLLED = ("obama", "biden", "rose_leslie", "alex_lacamoire")
"""The people enrolled under one authorisation (their photos: FACES/enroll/<identity>_N.jpg)."""


class ClusterError(RuntimeError):
    """A process of the deployment failed to start or a set-up command failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str, timeout_s: float = 300) -> str:
    """A command's stdout; its stderr in the error when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise ClusterError(f"{' '.join(args[:3])} ... failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


@dataclass
class Service:
    """One service process; its output goes to `log`."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def metrics_port(self, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while not self.port:
            for line in self.log.read_text(errors="replace").splitlines():
                if "metrics and health on port" in line:
                    self.port = int(line.rsplit(" ", 1)[1])
            if not self.port and (not self.running or time.monotonic() > deadline):
                raise ClusterError(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.2)
        return self.port

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples of `name` whose labels include `labels` (all when None); NaN when
        the service does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return float("nan")
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and s.labels.items() >= (labels or {}).items()
        )

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port()}/readyz"
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if not self.running or time.monotonic() > deadline:
                raise ClusterError(f"{self.name} never became ready:\n{self.tail()}")
            time.sleep(0.2)

    def cpu_s(self) -> float:
        """CPU seconds (user+system) of the process tree so far: a CPU clock."""
        return tree_cpu_s(self.proc.pid)

    def rss_mb(self) -> float:
        return tree_rss_mb(self.proc.pid)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM, then wait; SIGKILL (and None) if it hangs."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return None


@dataclass
class Deployment:
    """Services against one broker and topic prefix (`kafka.topic_prefix`); with `broker_dir`, the
    broker was started for this deployment and is stopped with it."""

    work: Path
    kafka: KafkaSettings
    services: dict[str, Service] = field(default_factory=dict)
    broker_dir: Path | None = None

    @property
    def prefix(self) -> str:
        return self.kafka.topic_prefix

    def start(
        self, name: str, *args: str, key: str = "", group: str = "", wrapper: Sequence[str] = ()
    ) -> Service:
        """`facestream NAME` in its own session (a terminal's Ctrl-C reaches only us); `key` names it
        in `services` (default NAME; replicas need their own), `group` its consumer group (default
        the service's own under the prefix). `wrapper` replaces the `facestream` command with one
        that is given the same arguments (a profiler, say)."""
        key = key or name
        log = self.work / f"{key}.log"
        command = list(wrapper) or [str(FACESTREAM)]
        proc = subprocess.Popen(
            [
                *command,
                name,
                "--bootstrap-servers",
                self.kafka.bootstrap_servers,
                "--topic-prefix",
                self.prefix,
                "--metrics-port",
                "0",
                "--group-id",
                group or f"{self.prefix}facestream-{name}",
                *args,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        service = Service(key, proc, log)
        self.services[key] = service
        return service

    def stop_services(self, keys: list[str] | None = None) -> dict[str, int | None]:
        """SIGTERM all (or `keys`) at once, then wait for each; they leave `services`."""
        chosen = {k: s for k, s in self.services.items() if keys is None or k in keys}
        for service in chosen.values():
            if service.running:
                service.proc.send_signal(signal.SIGTERM)
        codes = {key: service.stop() for key, service in chosen.items()}
        for key in chosen:
            del self.services[key]
        return codes

    def broker_pid(self) -> int | None:
        if self.broker_dir is None:
            return None
        try:
            return int((self.broker_dir / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> dict[str, int | None]:
        """Every service, then the broker if it is ours; the services' exit statuses."""
        codes = self.stop_services()
        if self.broker_dir is not None:
            run(str(REPO / "scripts" / "kafka.sh"), "stop", "--data-dir", str(self.broker_dir))
        return codes


def start_broker(work: Path, client_id: str, heap: str = "1g") -> tuple[KafkaSettings, Path]:
    """A single-node KRaft broker in `work`/kafka, stopped when this process exits (--owner-pid)."""
    data = work / "kafka"
    port = free_port()
    run(
        str(REPO / "scripts" / "kafka.sh"), "start", "--data-dir", str(data), "--port", str(port),
        "--controller-port", str(free_port()), "--heap", heap, "--owner-pid", str(os.getpid()),
    )  # fmt: skip
    return KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", client_id=client_id), data


def create_topics(kafka: KafkaSettings, partitions: dict[str, int]) -> None:
    """The whole topic catalogue under `kafka.topic_prefix`, with these partition counts."""
    ensure_topics(kafka, catalogue(kafka.topic_prefix, partitions))


def enroll(gallery: Path, faces: Path, actor: str) -> str:
    """Grant one authorisation and enroll ENROLLED under it (the real CLI, as an operator would);
    returns the authorisation id."""
    common = ["--gallery", str(gallery), "--actor", actor]
    granted = run(
        str(FACESTREAM), "authorisation", "grant", *common, "--case", f"{actor.upper()}-1",
        "--basis", f"{actor} test", "--purpose", "wanted", "--issued-by", actor,
        "--valid-from", "2000-01-01T00:00:00Z", "--valid-until", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    authorisation = str(json.loads(granted)["id"])
    for identity in ENROLLED:
        photos = [str(p) for p in sorted((faces / "enroll").glob(f"{identity}_*.jpg"))]
        run(
            str(FACESTREAM), "gallery", "enroll", *common, "--identity", identity,
            "--authorisation", authorisation, *photos,
        )  # fmt: skip
    return authorisation


class LagReader:
    """Consumer groups' lag, counted as `facestream cluster status` counts it (from the committed
    offset, else the log's start, to the end), through consumers kept open that never join a
    group (one to read the logs' ends, one per group to read its committed offsets): cheap enough
    to ask every second.

    Not through the admin client, as GroupReader does: here librdkafka 2.16 crashed the process
    (SIGSEGV in rd_kafka_cgrp_op, from rd_kafka_handle_OffsetFetch) when the answer to a
    ListConsumerGroupOffsets request came after the request had timed out, just after the
    broker started."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 5.0) -> None:
        self._kafka = kafka
        self._ends = inspector(kafka)
        self._groups: dict[str, Consumer] = {}
        self._timeout_s = timeout_s
        self._partitions: dict[str, int] = {}
        self._admin: AdminClient | None = None

    def _count(self, topic: str) -> int:
        if topic not in self._partitions:
            found = self._ends.list_topics(topic, timeout=self._timeout_s).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise KafkaException(f"topic {topic} is not there")
            self._partitions[topic] = len(found.partitions)
        return self._partitions[topic]

    def _committed(self, group: str, partitions: list[TopicPartition]) -> dict[int, int]:
        if group not in self._groups:
            config = {**client_config(self._kafka), "group.id": group, "enable.auto.commit": False}
            self._groups[group] = Consumer(config)
        found = self._groups[group].committed(partitions, timeout=self._timeout_s)
        return {tp.partition: tp.offset for tp in found}

    def lags(self, groups: dict[str, str]) -> dict[str, int | None]:
        """Each group's lag on the topic it consumes; None where Kafka did not answer (a topic
        not there yet, a partition without a leader yet, a broker slow to answer). The logs' ends
        of every topic come in one request, each group's offsets in one more."""
        wanted: dict[str, list[TopicPartition]] = {}
        for topic in set(groups.values()):
            try:
                wanted[topic] = [TopicPartition(topic, p) for p in range(self._count(topic))]
            except KafkaException:
                continue
        try:
            ends = self._offsets([tp for tps in wanted.values() for tp in tps], OFFSET_END)
        except KafkaException:
            return dict.fromkeys(groups)
        out: dict[str, int | None] = {}
        for group, topic in groups.items():
            if topic not in wanted:
                out[group] = None
                continue
            try:
                committed = self._committed(group, wanted[topic])
                unread = [tp for tp in wanted[topic] if committed.get(tp.partition, -1) < 0]
                starts = self._offsets(unread, OFFSET_BEGINNING) if unread else {}
            except KafkaException:
                out[group] = None
                continue
            out[group] = sum(
                max(0, ends[(topic, p)] - (c if (c := committed.get(p, -1)) >= 0 else starts[(topic, p)]))
                for p in range(len(wanted[topic]))
            )
        return out

    def _offsets(self, partitions: list[TopicPartition], which: int) -> dict[tuple[str, int], int]:
        """The start (OFFSET_BEGINNING) or end (OFFSET_END) of each partition, in one ListOffsets."""
        found = self._ends.offsets_for_times(
            [TopicPartition(tp.topic, tp.partition, which) for tp in partitions], timeout=self._timeout_s
        )
        if any(tp.error is not None for tp in found):
            raise KafkaException(next(tp.error for tp in found if tp.error is not None))
        return {(tp.topic, tp.partition): tp.offset for tp in found}

    def assignment(self, group: str, topic: str) -> list[tuple[int, ...]] | None:
        """The partitions of `topic` each member of `group` holds; None when Kafka did not answer."""
        if self._admin is None:
            self._admin = AdminClient(client_config(self._kafka))
        try:
            future = self._admin.describe_consumer_groups([group], request_timeout=15)[group]
            description = future.result(20)
        except (KafkaException, TimeoutError):
            return None
        return [
            tuple(sorted(tp.partition for tp in (m.assignment.topic_partitions or []) if tp.topic == topic))
            for m in description.members
        ]

    def close(self) -> None:
        """Before the broker stops: librdkafka can block for good destroying a client whose
        broker is gone."""
        for consumer in [self._ends, *self._groups.values()]:
            consumer.close()
        self._groups.clear()
        self._admin = None
