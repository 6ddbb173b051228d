"""Services as real, separate processes: start, read their metrics, SIGTERM, and never leak one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from facestream.settings import KafkaSettings

FACESTREAM = Path(sys.executable).with_name("facestream")
PORT_LINE = re.compile(r"metrics and health on port (\d+)")


class ServiceProcess:
    """One `facestream <service>` process, its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(FACESTREAM), name, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops us
        )
        self._port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def metrics_port(self, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while self._port is None:
            found = PORT_LINE.search(self.log())
            if found:
                self._port = int(found.group(1))
            elif not self.running or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never served metrics:\n{self.tail()}")
            else:
                time.sleep(0.1)
        return self._port

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(
            value for labels_, value in self.samples(name) if labels_.items() >= (labels or {}).items()
        )

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return [
            (dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics_port()}/readyz"
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 90) -> None:
        wait_until(self.ready, timeout_s, f"{self.name} ready", self)

    def terminate(self, timeout_s: float = 40) -> int:
        """SIGTERM, then wait: the exit status (a hang is killed and reported as -9)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return -9
        finally:
            self._log.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def wait_until(
    check: object, timeout_s: float, what: str, *procs: ServiceProcess, interval_s: float = 0.25
) -> None:
    """Poll `check()` until true; on timeout fail with the services' recent logs."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        dead = [p for p in procs if not p.running]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} (rc {p.proc.poll()}):\n{p.tail()}" for p in procs)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(interval_s)


def kafka_args(settings: KafkaSettings) -> list[str]:
    return ["--bootstrap-servers", settings.bootstrap_servers, "--topic-prefix", settings.topic_prefix]


class Services:
    """Starts services; whatever is still running at the end is stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def start(self, name: str, *args: str) -> ServiceProcess:
        n = sum(1 for p in self.started if p.name == name)
        proc = ServiceProcess(name, args, self._log_dir / f"{name}-{n}.log")
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.running:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            if proc.proc.returncode is None:
                proc.terminate(30)


@contextmanager
def services(log_dir: Path) -> Iterator[Services]:
    running = Services(log_dir)
    try:
        yield running
    finally:
        running.stop_all()
        for proc in running.started:  # shown by pytest when the test failed
            print(f"--- {proc.name} {proc.log_path} (rc {proc.proc.returncode}):\n{proc.tail(25)}")


def cli(*args: str, timeout_s: float = 120) -> str:
    """`facestream ARGS` as a separate process (so nothing, e.g. a gallery, stays open in
    pytest's); returns stdout and fails the test with stderr on a non-zero exit."""
    done = subprocess.run(
        [str(FACESTREAM), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, (
        f"facestream {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done.stdout
