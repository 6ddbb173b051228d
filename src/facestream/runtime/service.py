"""What every Kafka service does around its stage: flags, logging, metrics, signals, the loop.

A service entrypoint in services/ only names its stage, its settings and its topics; this
module turns that into a process that shuts down cleanly on SIGTERM: the batch in hand
is finished, its outputs flushed, its offsets committed, and the consumer leaves its
group so the partitions move at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings

from facestream.cliargs import OneLineParser, add_settings, fail, settings_from
from facestream.codec import Codec
from facestream.errors import FacestreamError
from facestream.runtime.health import Health, serve
from facestream.runtime.runner import LoopPolicy, Route, StageRunner
from facestream.settings import KafkaSettings, RuntimeSettings
from facestream.stages.base import Stage
from facestream.transport import topics
from facestream.transport.kafka import KafkaConsumer, KafkaProducer

log = logging.getLogger(__name__)

Settings = dict[type[BaseSettings], Any]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM (Kubernetes) and SIGINT (a terminal) both mean: finish, commit, exit."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the batch in hand, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_health(runtime: RuntimeSettings, *, max_poll_age_s: float | None = None) -> Health:
    health = Health(
        liveness_file=runtime.liveness_file,
        max_poll_age_s=max_poll_age_s or max(60.0, 4 * runtime.batch_timeout_ms / 1000),
    )
    server = serve(health, runtime.metrics_port)
    log.info("metrics and health on port %d", server.server_address[1])
    return health


def loop_policy(runtime: RuntimeSettings) -> LoopPolicy:
    return LoopPolicy(
        batch_size=runtime.batch_size,
        batch_timeout_s=runtime.batch_timeout_ms / 1000,
        max_invalid_ratio=runtime.max_invalid_ratio,
    )


@dataclass(frozen=True)
class ConsumingService:
    """A stage that reads one topic and writes another."""

    name: str
    description: str
    settings: tuple[type[BaseSettings], ...]
    input_topic: str
    input_codec: Codec[Any]
    output_topic: str
    output_codec: Codec[Any]
    build: Callable[[Settings], Stage[Any, Any]]

    def parser(self, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        parser = parser or OneLineParser(prog=f"facestream {self.name}", description=self.description)
        add_settings(parser, KafkaSettings, RuntimeSettings, *self.settings)
        return parser

    def runner(self, settings: Settings, stop: threading.Event, health: Health) -> StageRunner[Any, Any]:
        kafka: KafkaSettings = settings[KafkaSettings]
        runtime: RuntimeSettings = settings[RuntimeSettings]
        prefix = kafka.topic_prefix
        route = Route(
            prefix + self.input_topic,
            self.input_codec,
            prefix + self.output_topic,
            self.output_codec,
            prefix + topics.dlq(self.name),
        )
        return StageRunner(
            self.build(settings),
            route,
            KafkaConsumer(kafka, runtime.group_id or f"facestream-{self.name}"),
            KafkaProducer(kafka),
            policy=loop_policy(runtime),
            health=health,
            stop=stop,
        )

    def run(self, args: argparse.Namespace) -> int:
        settings = parse_settings(args, (KafkaSettings, RuntimeSettings, *self.settings))
        runtime: RuntimeSettings = settings[RuntimeSettings]
        setup_logging(runtime.log_level)
        stop = threading.Event()
        install_stop_handlers(stop)
        health = start_health(runtime)
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


def parse_settings(args: argparse.Namespace, models: Sequence[type[BaseSettings]]) -> Settings:
    try:
        return {model: settings_from(args, model) for model in models}
    except FacestreamError as exc:
        fail(str(exc))
