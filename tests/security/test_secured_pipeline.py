"""The pipeline on the secured broker, each service as its own principal over SASL_SSL, and the
secrets it was given nowhere in what it printed, exported or documented.

A camera video of Obama goes frame-sampler → detector → embedder → matcher (gallery search, then
the faust episode step) and comes out as a candidate on `matches`: every hop crossed TLS with
SCRAM credentials and was allowed only by the ACLs of scripts/kafka/acls.txt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from facestream import codec
from facestream.messages import Candidate
from facestream.sample import make_camera_video
from facestream.settings import ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import KafkaProducer
from tests.dlq.world import enrolled_gallery
from tests.fixtures.kafka import read_topic
from tests.fixtures.security import PREFIX, SERVICES, SecureKafka
from tests.integration.processes import FACESTREAM, ServiceProcess, services, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@contextmanager
def principal(secure: SecureKafka, user: str) -> Iterator[None]:
    """Processes started inside get `user`'s credentials through the environment, and only those."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("FACESTREAM_KAFKA_")]:
        del os.environ[name]
    os.environ.update(secure.env(user))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def everything_printed(proc: ServiceProcess) -> str:
    """The process's whole output and its /metrics, /healthz and /readyz answers."""
    port = proc.metrics_port()
    served = []
    for path in ("/metrics", "/healthz", "/readyz"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                served.append(response.read().decode(errors="replace"))
        except OSError as exc:  # /readyz answers 503 while not ready: still a page
            served.append(str(exc))
    return proc.log() + "\n".join(served)


def wait_for_matches(secure: SecureKafka, timeout_s: float) -> list[Candidate]:
    """The candidates on `matches` once there is one (the access tests leave a probe message on
    each topic they may write: those are skipped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        envelopes = read_topic(secure.settings("admin"), PREFIX + topics.MATCHES, 1, 10)
        found = [codec.MATCHES.decode(e.value) for e in envelopes if e.value.startswith(b"\x00")]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)


def secrets(secure: SecureKafka) -> list[str]:
    return [secure.password(user) for user in ("admin", *SERVICES)]


def test_the_services_run_the_pipeline_over_sasl_ssl_as_their_own_principals(
    secure_kafka: SecureKafka, model_settings: ModelSettings, faces_dir: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "gallery"
    enrolled_gallery(gallery, model_settings.model_dir, faces_dir)
    video = make_camera_video([faces_dir / "probe" / "obama.jpg"], tmp_path / "street.mp4", seconds_each=2)
    model = ["--model-dir", str(model_settings.model_dir), "--execution-provider", "cpu"]
    common = ["--topic-prefix", PREFIX, "--metrics-port", "0", "--log-level", "DEBUG"]
    with services(tmp_path) as running:
        procs = []
        for name, extra in (
            ("detector", model),
            ("embedder", model),
            ("matcher", ["--gallery", str(gallery), "--episodes-data-dir", str(tmp_path / "faust")]),
            ("frame-sampler", ["--fps", "3"]),
        ):
            with principal(secure_kafka, name):
                procs.append(running.start(name, *common, *extra))
        for proc in procs:
            proc.wait_ready(120)
        admin = secure_kafka.settings("admin")
        producer = KafkaProducer(admin)
        camera = {"camera_id": "secure-cam", "url": str(video)}
        producer.produce(PREFIX + topics.CAMERAS, json.dumps(camera).encode(), key=b"secure-cam")
        producer.flush(30)

        found = wait_for_matches(secure_kafka, 180)
        assert [(c.identity, c.ref.camera_id) for c in found] == [("obama", "secure-cam")]
        printed = {proc.name: everything_printed(proc) for proc in procs}
        for proc in procs:
            assert proc.terminate() == 0, proc.tail()
    for name, text in printed.items():
        assert "facestream_" in text and " INFO " in text, name  # logs and metrics were searched
        for secret in secrets(secure_kafka):
            assert secret not in text, f"a password appears in what {name} printed"
            assert secret not in (tmp_path / f"{name}-0.log").read_text()


def test_a_refused_password_given_as_a_flag_is_not_printed_anywhere(
    secure_kafka: SecureKafka, model_settings: ModelSettings, tmp_path: Path
) -> None:
    wrong = "Wr0ng-" + secure_kafka.password("detector")[:12] + "-guess"
    with services(tmp_path) as running, principal(secure_kafka, "detector"):
        detector = running.start(
            "detector",
            "--topic-prefix",
            PREFIX,
            "--metrics-port",
            "0",
            "--log-level",
            "DEBUG",
            "--sasl-password",
            wrong,
            "--model-dir",
            str(model_settings.model_dir),
        )
        wait_until(lambda: detector.metrics_port() > 0, 60, "the detector's metrics", detector)
        time.sleep(8)  # it keeps trying to log in meanwhile, at DEBUG level
        printed = everything_printed(detector)
        detector.terminate(5)
    printed += (tmp_path / "detector-0.log").read_text()
    assert "metrics and health on port" in printed and "python_gc_objects" in printed
    # The refusal itself is logged as an error, in the broker's words, not only as timeouts.
    refusal = r"ERROR facestream\.transport\.kafka\.client: kafka at \S+ refused this client: .*[Aa]uthentic"
    assert re.search(refusal, printed)
    assert wrong not in printed
    assert secure_kafka.password("detector") not in printed


@pytest.mark.parametrize("service", ["frame-sampler", "detector", "embedder", "matcher", "review"])
def test_help_never_shows_a_password_from_the_environment(secure_kafka: SecureKafka, service: str) -> None:
    env = {
        **os.environ,
        **secure_kafka.env(service),
        "FACESTREAM_PHOTO_KEY": "cGhvdG8ta2V5LXNlY3JldC1ub3Qtc2hvd24=",
    }
    done = subprocess.run(
        [str(FACESTREAM), service, "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--sasl-password" in done.stdout
    assert secure_kafka.password(service) not in done.stdout + done.stderr
    assert "cGhvdG8ta2V5LXNlY3JldC1ub3Qtc2hvd24=" not in done.stdout + done.stderr
