"""matches + reviews → alerts.confirmed in Kafka mode: the faust app of the review service.

Two agents and a sweep, all applying the plain `ReviewBook` rules (decisions.py) to state in
faust Tables backed by changelog topics, so a restarted service recovers every pending
candidate and every decision before it reads another message:

- `matches`: a new candidate is audited (`candidate.open`) and becomes pending; its face
  crop goes to a separate table whose changelog is `compact,delete` with the review window
  as retention, and the crop is deleted the moment the candidate closes.
- `reviews`: a decision from the web app; the reviewer's role is checked again, the decision
  is judged, audited (`review.confirm` / `review.reject`, or `review.refused`), and, when it
  is the deciding confirmation, the alert is audited (`alert.confirmed`) and published
  before the state is saved: a crash in between publishes the same alert id again, never
  loses it.
- the sweep (every `review_sweep_interval_s`): candidates past the window, or whose
  authorisation ended, expire (`candidate.expire`, crop deleted); decided ones are
  forgotten after `review_keep_closed_s`; the pending gauges are updated.

Every state change is audited first, so nothing changes that the log does not show. One
lock serialises the agents and the sweep (they interleave at every await otherwise).
Delivery and redelivery are handled as in the episodes app (runtime/episodes_app.py):
manual acks after delivery, and an offset guard per input topic.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from facestream import codec
from facestream.accountability.audit import Actor, AuditWriter
from facestream.accountability.audit_chain import SYSTEM_ACTOR, SYSTEM_ROLE
from facestream.accountability.clock import now_ms
from facestream.codec import Codec
from facestream.errors import ConfigError, FacestreamError, InvalidMessage, PermissionDenied
from facestream.messages import Candidate
from facestream.review.decisions import Authorised, CandidateReview, DecisionRefused, Outcome, ReviewBook
from facestream.review.messages import Decision
from facestream.review.settings import ReviewSettings
from facestream.review.wire import ALERTS, REVIEWS
from facestream.runtime import metrics
from facestream.runtime.changelogs import declare_changelogs
from facestream.runtime.episodes_app import topic_layout
from facestream.runtime.faust_import import faust
from facestream.runtime.faust_kafka import faust_brokers, faust_credentials, faust_envelope
from facestream.runtime.offset_guard import OffsetGuard, Verdict
from facestream.runtime.runner import dlq_headers
from facestream.settings import KafkaSettings
from facestream.transport import topics
from facestream.transport.base import Envelope

log = logging.getLogger(__name__)

STAGE = "review"
SYSTEM = Actor(SYSTEM_ACTOR, SYSTEM_ROLE)
RESULTS_KEPT = 1000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
"""An account name, as roles.py accepts them."""
RoleCheck = Callable[[str], Actor]
"""reviewer name -> the Actor deciding in the reviewer role, or PermissionDenied."""


class ReviewFailed(FacestreamError):
    """The review service stopped on an error; the process exits non-zero so it is restarted."""


@dataclass(frozen=True, slots=True)
class _Topics:
    """Where the app writes: decisions (from the web app), alerts, dead letters."""

    reviews: faust.TopicT
    alerts: faust.TopicT
    dead: faust.TopicT


@dataclass(frozen=True, slots=True)
class ReviewConfig:
    """Everything the faust app needs, resolved before it starts."""

    kafka: KafkaSettings
    app_id: str
    data_dir: Path
    window_ms: int
    keep_closed_ms: int
    confirmations: int
    sweep_interval_s: float
    partitions: int
    """Of `matches`; the candidate and crop tables' changelogs get the same."""
    reviews_partitions: int
    replication: int
    stop_timeout_s: float = 25.0
    """--shutdown-grace-s: how long faust may take to commit and stop."""

    @classmethod
    def resolve(
        cls,
        kafka: KafkaSettings,
        review: ReviewSettings,
        group_id: str | None = None,
        stop_timeout_s: float = 25.0,
    ) -> ReviewConfig:
        """`group_id` (--group-id, as the chart sets for every service) is the app id unless
        --review-app-id is given."""
        prefix = kafka.topic_prefix
        partitions, replication = topic_layout(kafka, prefix + topics.MATCHES)
        reviews_partitions, _ = topic_layout(kafka, prefix + topics.REVIEWS)
        topic_layout(kafka, prefix + topics.ALERTS_CONFIRMED)
        if reviews_partitions != partitions:
            log.warning(
                "%s has %d partitions and %s %d: keep them equal, so that a candidate and its decisions "
                "share a partition number when the review service runs as several replicas",
                prefix + topics.REVIEWS, reviews_partitions, prefix + topics.MATCHES, partitions,
            )  # fmt: skip
        return cls(
            kafka=kafka,
            app_id=review.review_app_id or group_id or f"{prefix}facestream-review",
            data_dir=review.review_data_dir or Path(tempfile.gettempdir()) / "facestream-review",
            window_ms=round(review.review_window_s * 1000),
            keep_closed_ms=round(review.review_keep_closed_s * 1000),
            confirmations=review.review_confirmations,
            sweep_interval_s=review.review_sweep_interval_s,
            partitions=partitions,
            reviews_partitions=reviews_partitions,
            replication=replication,
            stop_timeout_s=stop_timeout_s,
        )


class ReviewApp:
    """The faust app, and what the web app reads and calls. Build and run it in the loop that owns it."""

    def __init__(
        self,
        config: ReviewConfig,
        *,
        audit: AuditWriter,
        role_of: RoleCheck,
        authorised: Authorised,
        on_sweep: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.config = config
        self.failure: BaseException | None = None
        self._audit = audit
        self._role_of = role_of
        self._authorised = authorised
        self.on_sweep = on_sweep
        """Called after every sweep (the service stamps liveness and readiness there)."""
        self._clock = clock
        self._lock = asyncio.Lock()
        self._app: faust.App | None = None
        self._topics: _Topics | None = None
        self.book: ReviewBook | None = None
        self._crops: MutableMapping[str, str] = {}
        """candidate id -> base64 of the crop's JPEG (a faust Table once built)"""
        self.recovered = False
        self._results: dict[str, str] = {}

    # -- what the web app uses -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.recovered and self._app is not None and not self._app.in_recovery

    def reviews(self) -> ReviewBook:
        if self.book is None:
            raise ReviewFailed("the review app has not been built")
        return self.book

    async def submit(self, decision: Decision) -> None:
        """Publish a decision to `reviews` (acknowledged by the broker when this returns)."""
        await self._publish(self._out.reviews, REVIEWS.encode(decision), decision.key)

    def crop_of(self, candidate_id: str) -> bytes | None:
        """The face crop of a pending candidate (None once review has ended)."""
        kept = self._crops.get(candidate_id)
        return None if kept is None else base64.b64decode(kept)

    def crop_ids(self) -> list[str]:
        return list(self._crops.keys())

    def result_of(self, decision_id: str) -> str | None:
        """What this process did with a decision it applied: counted, repeated or refused:<reason>."""
        return self._results.get(decision_id)

    @property
    def _out(self) -> _Topics:
        if self._topics is None:
            raise ReviewFailed("the review app has not been built")
        return self._topics

    # -- the faust app ---------------------------------------------------------------------

    def build(self) -> faust.App:
        config = self.config
        prefix = config.kafka.topic_prefix
        app = faust.App(
            config.app_id,
            broker=faust_brokers(config.kafka),
            broker_credentials=faust_credentials(config.kafka),
            broker_client_id=config.kafka.client_id,
            store="memory://",  # the changelogs are the state; a restart replays them
            datadir=str(config.data_dir),
            web_enabled=False,  # metrics, health and the web app are served by the service itself
            autodiscover=False,
            topic_replication_factor=config.replication,
            topic_partitions=config.partitions,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=True,
            producer_acks=-1,
        )

        def raw(name: str) -> faust.TopicT:
            return app.topic(prefix + name, key_serializer="raw", value_serializer="raw")

        matches, reviews = raw(topics.MATCHES), raw(topics.REVIEWS)
        self._topics = _Topics(reviews, raw(topics.ALERTS_CONFIRMED), raw(topics.dlq(STAGE)))
        segment_ms = max(1000, min(3_600_000, config.window_ms // 5))
        candidates: Any = app.Table(
            "review-candidates",
            default=None,
            partitions=config.partitions,
            # bytes keys are written raw: the producer partitions them as it does `matches`
            key_type=bytes,
            use_partitioner=True,  # the sweep writes outside any stream event
            extra_topic_configs={"segment.ms": str(segment_ms)},
            help="candidates under review: candidate id -> CandidateReview.to_json() (no images)",
        )
        crops: Any = app.Table(
            "review-crops",
            default=None,
            partitions=config.partitions,
            key_type=bytes,
            use_partitioner=True,
            extra_topic_configs={
                # a crop outlives neither its candidate (deleted at close) nor the window (deleted by age)
                "cleanup.policy": "compact,delete",
                "retention.ms": str(config.window_ms),
                "segment.ms": str(segment_ms),
            },
            help="face crops of pending candidates: candidate id -> base64 JPEG; deleted when review ends",
        )

        def progress(name: str, partitions: int) -> OffsetGuard:
            schema: Any = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
            table = app.Table(name, default=None, partitions=partitions, schema=schema, help="next offsets")
            return OffsetGuard(table)

        self.book = ReviewBook(
            ByCandidateId(candidates),
            window_ms=config.window_ms,
            keep_closed_ms=config.keep_closed_ms,
            confirmations=config.confirmations,
            authorised=self._authorised,
        )
        self._crops = ByCandidateId(crops)
        app.agent(matches, name=f"{config.app_id}.matches")(
            self._guarded(app, progress("review-matches-progress", config.partitions), self._on_candidate)
        )
        reviews_guard = progress("review-reviews-progress", config.reviews_partitions)
        app.agent(reviews, name=f"{config.app_id}.reviews")(
            self._guarded(app, reviews_guard, self._on_decision)
        )
        self._app = app
        return app

    def _guarded(
        self, app: faust.App, guard: OffsetGuard, handle: Callable[[Envelope], Any]
    ) -> Callable[[faust.StreamT[bytes]], Any]:
        """An agent body: each input offset applied once, acknowledged only after its effects."""

        async def agent(stream: faust.StreamT[bytes]) -> None:
            manual = cast(faust.Stream[bytes], stream).noack()
            async for event in manual.events():
                message = event.message
                verdict = guard.check(message.partition, message.offset)
                if verdict is Verdict.PROCESS:
                    try:
                        await handle(faust_envelope(message))
                    except Exception as exc:
                        log.exception("%s: stopping on an error; %s stays uncommitted", STAGE, message.tp)
                        self.failure = exc
                        await app.crash(exc)
                        return
                    guard.done(message.partition, message.offset)
                elif verdict is Verdict.GAP:
                    expected = guard.expected(message.partition)
                    log.warning(
                        "%s: %s skipped to %d; reading from %s", STAGE, message.tp, message.offset, expected
                    )
                    await app.consumer.seek(message.tp, cast(int, expected))
                await manual.ack(event)

        return agent

    async def _publish(
        self, topic: faust.TopicT, value: bytes, key: bytes | None, headers: Any = None
    ) -> None:
        """Send now (not at the next commit) and wait for the broker's acknowledgement."""
        sent = await topic.send(key=key, value=value, headers=headers, force=True)
        await sent

    async def _decode(self, env: Envelope, codec_: Codec[Any]) -> Any | None:
        try:
            return codec_.decode(env.value)
        except InvalidMessage as error:
            await self._publish(self._out.dead, env.value, env.key, list(dlq_headers(STAGE, env, error)))
            metrics.DLQ.labels(STAGE, error.reason).inc()
            metrics.MESSAGES.labels(STAGE, "dlq").inc()
            log.warning("%s: %s/%d@%d to the DLQ: %s", STAGE, env.topic, env.partition, env.offset, error)
            return None

    # -- the rules, applied ----------------------------------------------------------------

    async def _on_candidate(self, env: Envelope) -> None:
        candidate: Candidate | None = await self._decode(env, codec.MATCHES)
        if candidate is None:
            return
        book = self.reviews()
        async with self._lock:
            review = book.admit(candidate, self._clock())
            if review is not None:
                self._audit.append(
                    actor=SYSTEM,
                    action="candidate.open",
                    authorisation_id=review.authorisation_id,
                    objects=_candidate_objects(review),
                )
                if candidate.thumbnail_jpeg:
                    self._crops[review.candidate_id] = base64.b64encode(candidate.thumbnail_jpeg).decode()
                book.save(review)
        metrics.MESSAGES.labels(STAGE, "ok").inc()

    async def _on_decision(self, env: Envelope) -> None:
        decision: Decision | None = await self._decode(env, REVIEWS)
        if decision is None:
            return
        async with self._lock:
            try:
                actor = self._role_of(decision.reviewer)
            except (PermissionDenied, ConfigError) as exc:  # no reviewer role, or not an account name
                self._refuse(decision, exc)
            else:
                try:
                    outcome = self.reviews().judge(decision, actor.role, self._clock())
                except DecisionRefused as exc:
                    self._refuse(decision, exc)
                else:
                    await self._apply(actor, outcome)
        metrics.MESSAGES.labels(STAGE, "ok").inc()

    def _refuse(self, decision: Decision, why: FacestreamError) -> None:
        reason = why.reason if isinstance(why, DecisionRefused) else "not_reviewer"
        log.warning("%s: refused %s by %s: %s", STAGE, decision.decision, decision.reviewer, why)
        review = self.reviews().get(decision.candidate_id)
        self._audit.append(
            actor=Actor(_plain_name(decision.reviewer), "unverified"),
            action="review.refused",
            authorisation_id=review.authorisation_id if review else None,
            objects={
                "candidate_id": decision.candidate_id,
                "decision_id": decision.decision_id,
                "decision": decision.decision,
                "reason": reason,
            },
        )
        metrics.REVIEW_VOTES.labels(decision.decision, "refused").inc()
        self._remember(decision.decision_id, f"refused:{reason}")

    def _remember(self, decision_id: str, result: str) -> None:
        self._results[decision_id] = result
        while len(self._results) > RESULTS_KEPT:
            self._results.pop(next(iter(self._results)))

    async def _apply(self, actor: Actor, outcome: Outcome) -> None:
        review, decision = outcome.review, outcome.decision
        self._audit.append(
            actor=actor,
            action=f"review.{decision.decision}",
            authorisation_id=review.authorisation_id,
            objects={
                "candidate_id": review.candidate_id,
                "decision_id": decision.decision_id,
                "counted": outcome.counted,
                "confirmations": len(review.confirmations),
                "required": self.config.confirmations,
                "status": review.status,
            },
        )
        metrics.REVIEW_VOTES.labels(decision.decision, "counted" if outcome.counted else "repeated").inc()
        alert = outcome.alert
        if alert is not None:
            self._audit.append(
                actor=SYSTEM,
                action="alert.confirmed",
                authorisation_id=alert.authorisation_id,
                objects={
                    "alert_id": alert.alert_id,
                    "candidate_id": alert.candidate_id,
                    "identity": alert.identity,
                    "camera_id": alert.ref.camera_id,
                    "confirmed_by": list(alert.confirmed_by),
                },
            )
            await self._publish(self._out.alerts, ALERTS.encode(alert), alert.key)
            metrics.ALERTS_CONFIRMED.inc()
            log.info("%s: alert %s confirmed by %s", STAGE, alert.alert_id, ", ".join(alert.confirmed_by))
        if outcome.counted:
            self._close_if_done(review)
            self.reviews().save(review)
        self._remember(decision.decision_id, "counted" if outcome.counted else "repeated")

    def _close_if_done(self, review: CandidateReview) -> None:
        if not review.pending:
            self._crops.pop(review.candidate_id, None)
            metrics.REVIEW_DECISIONS.labels(review.status).inc()

    # -- the sweep -------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire what is due, forget what is old, drop orphan crops, update the gauges."""
        book = self.reviews()
        async with self._lock:
            now = self._clock()
            for review in book.due(now):
                self._audit.append(
                    actor=SYSTEM,
                    action="candidate.expire",
                    authorisation_id=review.authorisation_id,
                    objects={"candidate_id": review.candidate_id, "reason": review.close_reason},
                )
                self._close_if_done(review)
                book.save(review)
            for candidate_id in book.stale(now):
                book.forget(candidate_id)
            pending = book.pending()
            for candidate_id in _orphans(self._crops.keys(), {r.candidate_id for r in pending}):
                self._crops.pop(candidate_id, None)
        metrics.REVIEW_PENDING.set(len(pending))
        oldest = (now - pending[0].opened_at_ms) / 1000 if pending else 0.0
        metrics.REVIEW_OLDEST_PENDING_AGE.set(max(0.0, oldest))

    async def _sweeping(self, stop: asyncio.Event) -> None:
        assert self._app is not None
        while not stop.is_set():
            self.recovered = self.recovered or cast(Any, self._app.tables).recovery.completed.is_set()
            if self.ready:
                try:
                    await self.sweep()
                except Exception as exc:
                    log.exception("%s: the sweep failed", STAGE)
                    self.failure = exc
                    await self._app.crash(exc)
                    return
            metrics.LAST_POLL.labels(STAGE).set(time.time())
            self.on_sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.sweep_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set or faust crashes, then stop (which commits)."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        app = self._app or self.build()
        await asyncio.to_thread(declare_changelogs, self.config.kafka, app)
        await app.start()
        prefix = self.config.kafka.topic_prefix
        log.info(
            "%s: %s + %s -> %s (app %s, %d partitions)",
            STAGE, prefix + topics.MATCHES, prefix + topics.REVIEWS, prefix + topics.ALERTS_CONFIRMED,
            self.config.app_id, self.config.partitions,
        )  # fmt: skip
        sweeping = asyncio.ensure_future(self._sweeping(stop))
        stopped = asyncio.ensure_future(stop.wait())
        crashed = asyncio.ensure_future(app.wait_until_stopped())
        try:
            await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            for waiter in (stopped, crashed):
                waiter.cancel()
            await sweeping
            try:
                await asyncio.wait_for(app.stop(), timeout=self.config.stop_timeout_s)
            except TimeoutError:
                # e.g. stuck recovering a changelog it cannot read: what was not committed is redelivered
                raise ReviewFailed(
                    f"{STAGE}: faust did not stop within {self.config.stop_timeout_s:.0f}s"
                ) from None
        failure = self.failure or app.crash_reason
        if failure is not None:
            raise ReviewFailed(f"{STAGE}: {failure}") from failure


def _candidate_objects(review: CandidateReview) -> dict[str, Any]:
    """The same objects `facestream identify` audits for candidate.open (ids, label, score)."""
    return {
        "candidate_id": review.candidate_id,
        "episode_id": review.episode_id,
        "entry_id": review.entry_id,
        "identity": review.identity,
        "camera_id": review.ref.camera_id,
        "zone": review.zone,
        "frame_ts_ms": review.ref.captured_at_ms,
        "score": round(review.score, 4),
    }


def _orphans(crop_ids: Iterable[str], pending: set[str]) -> list[str]:
    return [c for c in list(crop_ids) if c not in pending]


def _plain_name(name: str) -> str:
    """A claimed reviewer name fit for the log (a forged decision can claim anything)."""
    return name if NAME.match(name) else "invalid-name"


class ByCandidateId(MutableMapping[str, Any]):
    """A table keyed by the candidate id's bytes, seen as keyed by the id (what ReviewBook uses)."""

    def __init__(self, table: MutableMapping[bytes, Any]) -> None:
        self._table = table

    def __getitem__(self, key: str) -> Any:
        value = self._table[key.encode()]
        if value is None:  # a faust Table with default=None
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self._table[key.encode()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.encode() in self._table

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in list(self._table))

    def __len__(self) -> int:
        return len(self._table)
