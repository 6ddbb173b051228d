"""What every Kafka service does around its stage: flags, logging, metrics, signals, the loop.

A service entrypoint in services/ only names its stage, its settings and its topics; this
module turns that into a process that shuts down cleanly on SIGTERM: the batch in hand
is finished, its outputs flushed, its offsets committed, and the consumer leaves its
group so the partitions move at once. The grace period is enforced: a batch that cannot
finish within `--shutdown-grace-s` is abandoned uncommitted and the process exits 3, so a
hung call can never turn a rolling update into a wait for SIGKILL with no word of why.

On Kafka every consuming stage commits through a transaction (transport/transactional.py); its
transactional id and its static group membership come from `--replica-id`.

A service started while Kafka is down (a cluster restart, a node that comes up first) waits
for it rather than exiting: exiting would only make Kubernetes restart it in a back-off loop.
Meanwhile /readyz says not ready, /healthz stays green (waiting is not a hang), and the log
says what it waits for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic_settings import BaseSettings

from facestream.cliargs import OneLineParser, Only, add_settings, fail, model_of, settings_from
from facestream.codec import Codec
from facestream.errors import FacestreamError
from facestream.runtime.health import Health, serve
from facestream.runtime.logs import setup_logging
from facestream.runtime.runner import Keyed, LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings, RuntimeSettings, Settings
from facestream.stages.base import Stage
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer, TransactionalProducer, client_config
from facestream.transport.transactional import Transactional

log = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


def close_opened(service: str, opened: Sequence[Closable]) -> bool:
    """Close what a service opened for its run (audit chains to seal, a gallery), in order, on
    the way out; False, logged, if one refused: the exit status then says the end was not clean."""
    try:
        for thing in opened:
            thing.close()
    except FacestreamError as exc:
        log.error("%s: on the way out: %s", service, exc)
        return False
    return True


TRANSACTION_TIMEOUT_S = 10.0
"""Each transaction call (send offsets, commit, abort) is a round trip or two; a call that takes
longer than this is retried, and one blocked well past it is abandoned (TransactionalProducer)."""
GRACE_EXCEEDED = 3
"""Exit status when the shutdown grace period ran out with work still in hand."""


def enforce_grace(grace_s: float) -> threading.Thread:
    """After `grace_s`, end the process whatever it is doing: nothing more is committed, so
    the unfinished batch is simply processed again by whoever takes the partitions."""

    def expire() -> None:
        time.sleep(grace_s)
        log.error(
            "shutdown grace period of %.3gs exceeded: exiting without committing the work in hand", grace_s
        )
        logging.shutdown()
        os._exit(GRACE_EXCEEDED)

    thread = threading.Thread(target=expire, name="shutdown-grace", daemon=True)
    thread.start()
    return thread


def install_stop_handlers(stop: threading.Event, grace_s: float | None = None) -> None:
    """SIGTERM (Kubernetes) and SIGINT (a terminal) both mean: finish, commit, exit; with
    `grace_s`, within that many seconds or not at all."""
    deadline: list[threading.Thread] = []

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()
        if grace_s is not None and not deadline:
            deadline.append(enforce_grace(grace_s))

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_health(runtime: RuntimeSettings, *, max_poll_age_s: float | None = None) -> Health:
    health = Health(
        liveness_file=runtime.liveness_file,
        max_poll_age_s=max_poll_age_s or max(runtime.liveness_timeout_s, 4 * runtime.batch_timeout_ms / 1000),
    )
    server = serve(health, runtime.metrics_port)
    log.info("metrics and health on port %d", server.server_address[1])
    return health


KAFKA_WAIT_LOG_EVERY_S = 30.0


def wait_for_kafka(
    kafka: KafkaSettings, health: Health, stop: threading.Event, *, every_s: float = 1.0
) -> bool:
    """Until Kafka answers a metadata request; False if `stop` was set first.

    Not ready meanwhile (the caller sets readiness once its loop runs), but alive: the wait
    stamps the liveness clock, so a probe does not restart a pod that only waits for Kafka. A
    refused login or a missing right is logged as such by the client (transport/kafka/client.py), and
    waited out too: fixed by an operator, the service starts without a restart.
    """
    admin = AdminClient(client_config(kafka))
    started = time.monotonic()
    logged: float | None = None
    while True:
        health.polled()
        try:
            if admin.list_topics(timeout=5.0).brokers:
                if logged is not None:
                    log.info(
                        "Kafka at %s answers, after %.0fs",
                        kafka.bootstrap_servers,
                        time.monotonic() - started,
                    )
                return True
            why = "no broker in its answer"
        except KafkaException as exc:
            why = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        # librdkafka reports a refused login through error_cb (logged as an error by the
        # transport), and an admin client serves its callbacks only when polled.
        admin.poll(0)
        now = time.monotonic()
        if logged is None or now - logged >= KAFKA_WAIT_LOG_EVERY_S:
            log.warning(
                "waiting for Kafka at %s (%s), %.0fs so far; not ready until it answers",
                kafka.bootstrap_servers,
                why,
                now - started,
            )
            logged = now
        if stop.wait(every_s):
            return False


def group_id(kafka: KafkaSettings, runtime: RuntimeSettings, stage: str) -> str:
    """--group-id, else one per stage and deployment: two deployments (topic prefixes) on one
    cluster never share a group."""
    return runtime.group_id or f"{kafka.topic_prefix}facestream-{stage}"


def transactional_id(group: str, runtime: RuntimeSettings) -> str:
    """Stable per replica, so a restarted replica fences its predecessor and aborts the
    transaction it left open at once. Without --replica-id: host name and process id, which
    stay the same when a container restarts in its pod (the process is pid 1 there)."""
    replica = runtime.replica_id or f"{socket.gethostname()}-{os.getpid()}"
    return f"{group}.{replica}"


def loop_policy(runtime: RuntimeSettings) -> LoopPolicy:
    return LoopPolicy(
        batch_size=runtime.batch_size,
        batch_timeout_s=runtime.batch_timeout_ms / 1000,
        max_invalid_ratio=runtime.max_invalid_ratio,
        stall_s=runtime.input_stall_timeout_s,
    )


In = TypeVar("In")
Out = TypeVar("Out", bound=Keyed)


@dataclass(frozen=True)
class ConsumingService(Generic[In, Out]):
    """A stage that reads one topic and writes another. Typed by the stage's input and output, so
    a codec that does not fit the stage (frames decoded for the embedder) is a type error."""

    name: str
    description: str
    settings: tuple[type[BaseSettings] | Only, ...]
    input_topic: str
    input_codec: Codec[In]
    output_topic: str
    output_codec: Codec[Out]
    build: Callable[[Settings], Stage[In, Out]]

    def parser(self, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        parser = parser or OneLineParser(prog=f"facestream {self.name}", description=self.description)
        add_settings(parser, KafkaSettings, RuntimeSettings, *self.settings)
        return parser

    def runner(self, settings: Settings, stop: threading.Event, health: Health) -> StageRunner[In, Out]:
        kafka = settings[KafkaSettings]
        runtime = settings[RuntimeSettings]
        prefix = kafka.topic_prefix
        route = Route(
            prefix + self.input_topic,
            self.input_codec,
            prefix + self.output_topic,
            self.output_codec,
            prefix + topics.dlq(self.name),
        )
        stage = self.build(settings)
        group = group_id(kafka, runtime, self.name)
        policy = loop_policy(runtime)
        consumer = KafkaConsumer(kafka, group, instance_id=runtime.replica_id)
        try:
            producer = TransactionalProducer(
                kafka, transactional_id(group, runtime), timeout_s=TRANSACTION_TIMEOUT_S, wait_for_kafka=True
            )
        except BaseException:
            consumer.close()
            raise
        return StageRunner(
            stage,
            route,
            consumer,
            producer,
            policy=policy,
            health=health,
            stop=stop,
            commit=Transactional(consumer, producer),
        )

    def run(self, args: argparse.Namespace) -> int:
        settings = parse_settings(args, (KafkaSettings, RuntimeSettings, *self.settings))
        runtime = settings[RuntimeSettings]
        setup_logging(runtime.log_level, runtime.log_format, self.name)
        stop = threading.Event()
        install_stop_handlers(stop, runtime.shutdown_grace_s)
        health = start_health(runtime)
        if not wait_for_kafka(settings[KafkaSettings], health, stop):
            return 0  # stopped while waiting: nothing was started
        try:
            runner = self.runner(settings, stop, health)
            log.info("%s: %s -> %s", self.name, runner.route.input_topic, runner.route.output_topic)
            runner.run()
        except FacestreamError as exc:
            log.error("%s: %s", self.name, exc)
            return 1
        return 0

    def main(self, argv: Sequence[str] | None = None) -> int:
        return self.run(self.parser().parse_args(argv))


def parse_settings(args: argparse.Namespace, models: Sequence[type[BaseSettings] | Only]) -> Settings:
    """Each model (an `Only` of one: the whole model) from flags, env and the --config file."""
    try:
        return Settings(*(settings_from(args, model_of(model)) for model in models))
    except FacestreamError as exc:
        fail(str(exc))
