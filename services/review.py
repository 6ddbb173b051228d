"""review: matches + reviews → alerts.confirmed (two-person confirmation), and the reviewers' web app.

One process, one event loop: the faust app (candidates and decisions in changelog-backed
tables; review/app.py) and the web app (review/web.py, on --review-port) share it, so a
decision pressed in the browser is published to `reviews` by the same app that applies it.
Metrics, /healthz and /readyz are on --metrics-port as for every service. SIGTERM or SIGINT:
faust commits what it acknowledged, the web app closes, the process exits 0; a failure exits 1.
Audit records go to the state directory's log and to the `audit` topic (writer
`review-<replica or host>`, accountability/audit_mirror.py); a record either store cannot take stops
the service before anything changes, and the topic chain is sealed on the way out (else exit 1).

Reviewer accounts: `facestream review add-reviewer NAME` (and set-password, remove-reviewer,
list-reviewers); see docs/review.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import BaseSettings

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings, PhotoSettings
from facestream.cliargs import OneLineParser, Only, add_settings
from facestream.errors import ConfigError, FacestreamError
from facestream.review import commands
from facestream.review.settings import ReviewSettings
from facestream.runtime.health import Health
from facestream.runtime.logs import setup_logging
from facestream.runtime.service import close_opened, parse_settings, start_health
from facestream.settings import GallerySettings, KafkaSettings, RuntimeSettings, Settings

if TYPE_CHECKING:
    from facestream.accountability.audit_mirror import AuditMirror
    from facestream.review.app import ReviewApp
    from facestream.review.web import WebContext

log = logging.getLogger("facestream.review")

SETTINGS: tuple[type[BaseSettings] | Only, ...] = (
    KafkaSettings,
    RuntimeSettings,
    GallerySettings,
    AccountabilitySettings,
    PhotoSettings,
    ReviewSettings,
    AUDIT_SIGNING,  # what signs its records; the public key is the verifiers'
)


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or OneLineParser(prog="facestream review", description=__doc__)
    add_settings(p, *SETTINGS)
    sub = p.add_subparsers(
        dest="review_command", required=False, parser_class=OneLineParser, metavar="ACCOUNTS"
    )
    commands.register(sub)
    return p


class OncePerMinute(logging.Filter):
    """The single-operator warning is logged on every role check; once a minute is loud enough."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, text = time.monotonic(), record.getMessage()
        if now - self._last.get(text, -60.0) < 60.0:
            return False
        self._last[text] = now
        return True


def run(args: argparse.Namespace) -> int:
    handler = getattr(args, "review_handler", None)
    if handler is not None:
        return int(handler(args))
    # faust only in the process that runs it: every other `facestream` command imports this module.
    from facestream.runtime.episodes_app import quiet_faust_logging

    settings = parse_settings(args, SETTINGS)
    runtime = settings[RuntimeSettings]
    review = settings[ReviewSettings]
    setup_logging(runtime.log_level, runtime.log_format, "review")
    quiet_faust_logging(logging.DEBUG if runtime.log_level == "DEBUG" else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("facestream.accountability.roles").addFilter(OncePerMinute())
    opened: list[AuditMirror] = []
    try:
        built = build(settings, opened)
        health = start_health(runtime, max_poll_age_s=max(60.0, 4 * review.review_sweep_interval_s))
    except ConfigError as exc:
        log.error("review: %s", exc)
        close_opened("review", opened)
        return 2
    except FacestreamError as exc:
        log.error("review: %s", exc)
        close_opened("review", opened)
        return 1
    try:
        code = asyncio.run(serve(*built, review, health))
    finally:
        sealed = close_opened("review", opened)
    return code if sealed else 1


def build(settings: Settings, opened: list[AuditMirror]) -> tuple[ReviewApp, WebContext]:
    """The faust app and the web app's context, from the settings (topics must exist). The audit
    writer it opens is added to `opened`: close it when the app has stopped."""
    from facestream.accountability.audit_mirror import open_audit_mirror, writer_name
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.photos import load_photo_key
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.settings import state_dir_of
    from facestream.review.accounts import ReviewerAccounts
    from facestream.review.app import ReviewApp, ReviewConfig
    from facestream.review.photos import EnrolledPhotos
    from facestream.review.sessions import Sessions
    from facestream.review.web import WebContext, WebPolicy

    review = settings[ReviewSettings]
    state_dir: Path = state_dir_of(settings[GallerySettings], settings[AccountabilitySettings])
    if not state_dir.is_dir():
        raise ConfigError(f"state directory {state_dir} does not exist (--gallery / --state-dir)")
    authorisations = AuthorisationStore(state_dir)

    def authorised(authorisation_id: str, now_ms: int) -> bool:
        found = authorisations.all().get(authorisation_id)
        return found is not None and found.in_force_at(now_ms)

    photo_settings = settings[PhotoSettings]
    runtime = settings[RuntimeSettings]
    config = ReviewConfig.resolve(settings[KafkaSettings], review, runtime.group_id, runtime.shutdown_grace_s)
    audit = open_audit_mirror(
        state_dir, settings[KafkaSettings], settings[AuditSettings], writer_name("review", runtime.replica_id)
    )
    opened.append(audit)
    app = ReviewApp(
        config,
        audit=audit,
        role_of=lambda name: resolve_actor(state_dir, "reviewer", name),
        authorised=authorised,
    )
    ctx = WebContext(
        review=app,
        accounts=ReviewerAccounts(state_dir),
        sessions=Sessions(idle_s=review.review_session_idle_s, max_s=review.review_session_max_s),
        role_of=lambda name: resolve_actor(state_dir, "reviewer", name),
        authorisations=authorisations,
        # never generates a key: a review service that has none cannot show enrolled photos
        photos=EnrolledPhotos(
            state_dir, lambda: load_photo_key(photo_settings, state_dir, single_operator=False)
        ),
        cookie_secure=review.review_cookie_secure,
        policy=WebPolicy.from_settings(review),
    )
    return app, ctx


async def serve(app: ReviewApp, ctx: WebContext, review: ReviewSettings, health: Health) -> int:
    """Run the faust app and the web app until a signal or a failure; 0 only on a clean stop."""
    from aiohttp import web

    from facestream.review.web import build_web

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        log.info("signal %s: committing what was applied, then exiting", signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def on_sweep() -> None:
        health.polled()
        health.set_ready(app.ready)
        ctx.sessions.sweep()

    app.on_sweep = on_sweep
    runner = web.AppRunner(build_web(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, review.review_host, review.review_port)
    try:
        await site.start()
    except OSError as exc:
        log.error("review: cannot listen on %s:%d: %s", review.review_host, review.review_port, exc)
        await runner.cleanup()
        return 2
    log.info("review web app on port %d", runner.addresses[0][1])
    try:
        await app.run(stop)
    except FacestreamError as exc:
        log.error("review: %s", exc)
        return 1
    except Exception:
        log.exception("review: the review app failed")
        return 1
    finally:
        health.set_ready(False)
        await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))
