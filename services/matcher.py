"""matcher: embeddings → hits (gallery search) → matches (one candidate per episode).

Two loops in one process. The confluent StageRunner (embeddings → hits: batched gallery
search, the hot path) runs in a thread; the faust episode app (hits → matches, state in a
changelog-backed table) runs on the main thread's event loop. SIGTERM or SIGINT stops both:
the runner finishes, flushes and commits its batch, faust commits the hits it has
acknowledged, and the process exits 0 (3 when that took longer than --shutdown-grace-s). If
either loop fails, both stop and it exits 1. While the gallery is unreachable the runner
pauses (nothing consumed, nothing committed); `facestream_gallery_up` says so, and
`facestream_gallery_entries` reports the gallery's size every half minute. The purge's audit
records go to the state directory's log and to the `audit` topic (writer `matcher-<replica or host>`);
on the way out the purge thread stops and that chain is sealed (exit 1 if it cannot be).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from facestream import codec
from facestream.accountability.matching import SETTINGS as ACCOUNTABILITY_SETTINGS
from facestream.accountability.matching import Matching, open_matching
from facestream.errors import ConfigError, FacestreamError, GalleryUnavailable
from facestream.gallery.store import Gallery
from facestream.runtime import metrics
from facestream.runtime.logs import setup_logging
from facestream.runtime.runner import StageRunner
from facestream.runtime.service import (
    ConsumingService,
    close_opened,
    enforce_grace,
    install_stop_handlers,
    parse_settings,
    start_health,
    wait_for_kafka,
)
from facestream.settings import GallerySettings, KafkaSettings, MatcherSettings, RuntimeSettings, Settings
from facestream.stages.match import MatchStage
from facestream.transport import topics

if TYPE_CHECKING:
    from facestream.runtime.episodes_app import EpisodesApp

log = logging.getLogger("facestream.matcher")


GALLERY_SIZE_EVERY_S = 30.0


def build(settings: Settings) -> MatchStage:
    return serving(open_matching(settings, metrics.MATCHER))


def serving(matching: Matching) -> MatchStage:
    # Accountability (engineer D1): the match policy (authorisations in force and in scope,
    # suspension rules) and the periodic purge of ended authorisations.
    threading.Thread(
        target=report_gallery_size, args=(matching.gallery,), name="gallery-size", daemon=True
    ).start()
    return matching.stage


def report_gallery_size(gallery: Gallery, every_s: float = GALLERY_SIZE_EVERY_S) -> None:
    """`facestream_gallery_entries`, now and every `every_s`; an unreachable gallery is reported
    by the search itself (`facestream_gallery_up`), so a failed count is simply skipped."""
    while True:
        with contextlib.suppress(GalleryUnavailable):
            metrics.GALLERY_ENTRIES.set(gallery.count())
        time.sleep(every_s)


SERVICE = ConsumingService(
    name="matcher",
    description=__doc__ or "",
    settings=(GallerySettings, MatcherSettings, *ACCOUNTABILITY_SETTINGS),
    input_topic=topics.EMBEDDINGS,
    input_codec=codec.EMBEDDINGS,
    output_topic=topics.HITS,
    output_codec=codec.HITS,
    build=build,
)


parser = SERVICE.parser


def run(args: argparse.Namespace) -> int:
    # faust only in the process that runs it: every other `facestream` command imports this module.
    from facestream.runtime.episodes_app import EpisodesApp, EpisodesConfig, quiet_faust_logging

    settings = parse_settings(args, (KafkaSettings, RuntimeSettings, *SERVICE.settings))
    runtime = settings[RuntimeSettings]
    setup_logging(runtime.log_level, runtime.log_format, "matcher")
    quiet_faust_logging(logging.DEBUG if runtime.log_level == "DEBUG" else logging.WARNING)
    stop = threading.Event()
    opened: list[Matching] = []

    def build_kept(s: Settings) -> MatchStage:
        matching = open_matching(s, metrics.MATCHER)
        opened.append(matching)
        return serving(matching)

    health = start_health(runtime)
    # Until the loops run, SIGTERM ends the wait for Kafka (or the opening, within the grace period);
    # serve() installs its own handlers.
    install_stop_handlers(stop, runtime.shutdown_grace_s)
    if not wait_for_kafka(settings[KafkaSettings], health, stop):
        return 0  # stopped while waiting: nothing was started
    try:
        episodes = EpisodesApp(
            EpisodesConfig.resolve(settings[KafkaSettings], settings[MatcherSettings], runtime.replica_id)
        )
        # opens the gallery and the audit chain, closed on the way out
        runner = dataclasses.replace(SERVICE, build=build_kept).runner(settings, stop, health)
    except ConfigError as exc:
        log.error("matcher: %s", exc)
        close_opened("matcher", opened)
        return 2
    except FacestreamError as exc:
        log.error("matcher: %s", exc)
        close_opened("matcher", opened)
        return 1
    log.info("matcher: %s -> %s", runner.route.input_topic, runner.route.output_topic)
    try:
        code = asyncio.run(serve(runner, episodes, stop, runtime.shutdown_grace_s))
    finally:
        sealed = close_opened("matcher", opened)
    return code if sealed else 1


async def serve(
    runner: StageRunner[Any, Any], episodes: EpisodesApp, stop: threading.Event, grace_s: float | None = None
) -> int:
    """Run both loops until a signal or a failure; 0 only when both stopped cleanly."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    failures: list[BaseException] = []

    def request_stop() -> None:
        stop.set()
        stopping.set()

    def on_signal(signum: signal.Signals) -> None:
        log.info("signal %s: finishing the work in hand, committing, then exiting", signum.name)
        if grace_s is not None and not stop.is_set():
            enforce_grace(grace_s)
        request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def run_runner() -> None:
        try:
            runner.run()
        except BaseException as exc:  # reported below; the other loop must stop too
            failures.append(exc)
            log.exception("matcher: the embeddings loop failed")
        finally:
            loop.call_soon_threadsafe(request_stop)

    thread = threading.Thread(target=run_runner, name="matcher-runner")
    thread.start()
    try:
        await episodes.run(stopping)
    except FacestreamError as exc:
        failures.append(exc)
        log.error("matcher: %s", exc)
    except Exception as exc:  # faust could not start or stopped abnormally
        failures.append(exc)
        log.exception("matcher: the episode step failed")
    finally:
        request_stop()
        await asyncio.to_thread(thread.join)
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))
