"""The four services as real processes that a test kills (SIGKILL) and restarts at will.

Every service runs with a stable `--replica-id`, as a StatefulSet pod would: a restarted
replica is the same static group member and the same transactional producer, so it takes its
partitions back at once and fences whatever its killed predecessor left open.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer
from tests.fixtures.reliability import PrivateBroker
from tests.integration.processes import ServiceProcess, Services, kafka_args

log = logging.getLogger(__name__)

STAGES = ("frame-sampler", "detector", "embedder", "matcher")
INPUT_STALL_S = 40
"""A consumer left wedged by a broker restart is replaced after this long (docs/delivery.md):
well inside the tests' waits, and still far above a batch's time on a loaded machine."""


def service_args(
    settings: KafkaSettings, model_dir: Path, gallery_uri: str, state_dir: Path, work: Path, gap_s: float
) -> dict[str, list[str]]:
    common = [*kafka_args(settings), "--metrics-port", "0", "--input-stall-timeout-s", str(INPUT_STALL_S)]
    model = ["--model-dir", str(model_dir), "--execution-provider", "cpu"]
    return {
        "frame-sampler": [*common, "--replica-id", "sampler-0", "--realtime-files"],
        # Every face forwarded: the census compares each face, embedding and hit with what the
        # in-process pipeline makes of the same frames. A tracker forwards a subset that depends
        # on when it lost its state (a killed detector restarts its tracks), which is by design
        # (docs/tracking.md) and would make that comparison meaningless.
        "detector": [*common, "--replica-id", "detector-0", "--no-track-faces", *model],
        "embedder": [*common, "--replica-id", "embedder-0", *model],
        "matcher": [
            *common,
            "--replica-id",
            "matcher-0",
            "--gallery",
            gallery_uri,
            "--state-dir",
            str(state_dir),
            "--episodes-data-dir",
            str(work / "faust"),
            "--episode-gap-s",
            str(gap_s),
        ],
    }


class Chaos:
    """Starts each service once, then kills and restarts any of them; keeps a log of what it did."""

    def __init__(self, running: Services, args: dict[str, list[str]]) -> None:
        self.running = running
        self.args = args
        self.current: dict[str, ServiceProcess] = {}
        self.events: list[str] = []
        self._t0 = time.monotonic()

    def start(self, name: str) -> ServiceProcess:
        proc = self.running.start(name, *self.args[name])
        self.current[name] = proc
        return proc

    def start_all(self, names: Sequence[str] = STAGES) -> None:
        for name in names:
            self.start(name)

    def kill(self, name: str, why: str = "") -> None:
        """SIGKILL the service (nothing of it runs on: no flush, no commit, no leaving the group),
        then start it again with the same arguments."""
        proc = self.current[name]
        assert proc.running, f"{name} died by itself:\n{proc.tail()}"
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(30)
        proc._log.close()
        self.events.append(f"{time.monotonic() - self._t0:7.1f}s kill {name} {why}".rstrip())
        self.start(name)

    def assert_running(self) -> None:
        dead = [p for p in self.current.values() if not p.running]
        assert not dead, "\n".join(f"--- {p.name} died (rc {p.proc.returncode}):\n{p.tail()}" for p in dead)

    def terminate_all(self) -> dict[str, int]:
        return {name: proc.terminate() for name, proc in self.current.items()}

    def story(self) -> str:
        return "\n".join(self.events)


class Watch:
    """Counts what reaches a topic (read_committed), for kills timed by what the pipeline does."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._consumer = KafkaConsumer(settings, f"watch-{uuid.uuid4().hex}")
        self._consumer.subscribe([settings.topic_prefix + topic])
        self.keys: list[bytes] = []

    def poll(self, timeout_s: float = 0.2) -> int:
        self.keys.extend(e.key or b"" for e in self._consumer.consume(500, timeout_s))
        return len(self.keys)

    def close(self) -> None:
        self._consumer.close()


def matches_watch(settings: KafkaSettings) -> Watch:
    return Watch(settings, topics.MATCHES)


def kill_broker(broker: PrivateBroker, timeout_s: float = 30) -> None:
    """SIGKILL the private broker: no controlled shutdown, no hand-over of its group and transaction
    coordinators, its logs recovered at the next start. `broker.start()` brings it back (same data
    dir and ports)."""
    pid = broker.pid
    broker.resume()  # a frozen process dies as well, but say so
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        assert time.monotonic() < deadline, f"broker {pid} still alive {timeout_s}s after SIGKILL"
        time.sleep(0.1)
    # kafka.sh would take a pid that lingers as a zombie (nobody reaps it here) for a running broker.
    (broker.data_dir / "kafka.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
