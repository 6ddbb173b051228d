"""The episode step's units, each usable without faust or a broker (episodes_app.py wires them).

Every unit takes what it talks to as a plain callable or a small protocol: in the matcher those
are faust topics, faust's consumer and the blocking Kafka helpers of transport/kafka.py; in the
unit tests they are lists and dicts. Blocking callables run in a thread (`asyncio.to_thread`),
as they did inside the app, so that the event loop faust runs on keeps going.

- `Seeder`: where the group starts a partition of which nothing was applied yet.
- `Expiry`: now and then, forget a partition's episodes unseen for the time to live.
- `CandidateOutput`: publish a candidate to `matches`, or find one a crash left there.
- `HitApplier`: one hit's effect: a dead letter, or the episode state and maybe a candidate.
- `OrderedApply`: the agent's step: each offset of `hits` applied once and in order.
- `Unstaller`: the timer's step: a partition whose last events were skipped is read again.
- `EndReporter`: another timer's step: episodes gone quiet to `episodes.ended` ("face gone").

The order of the writes for an opening hit, and why it gives exactly one candidate across
crashes, is explained in episodes_app.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol, cast

from facestream import codec
from facestream.errors import DeliveryError, InvalidMessage, RangeUnread
from facestream.messages import Candidate
from facestream.runtime import metrics
from facestream.runtime.offset_guard import OffsetGuard, Verdict
from facestream.runtime.runner import dlq_headers
from facestream.stages.episodes import EpisodeTracker, Opening
from facestream.transport.base import Envelope, Headers

log = logging.getLogger(__name__)

STAGE = "episodes"
STALL_S = 3.0
"""A partition with unapplied input and no event for this long had its last events skipped."""
SEED_RETRY_S = 1.0
"""How soon to ask Kafka again where the group starts a partition, when it did not answer."""
EXPIRE_EVERY_S = 60.0
"""How often, per partition, episodes past their time to live are looked for."""
READBACK_MARGIN_MS = 60_000
"""Looking for an unconfirmed candidate in `matches`, start this much before its episode opened."""

Send = Callable[[bytes, bytes | None, Headers], Awaitable[None]]
"""Publish (value, key, headers) to one topic and return once the broker acknowledged it."""
ReadRange = Callable[[str, int, int, int], list[Envelope]]
"""Blocking: the messages of (topic, partition) at offsets [start, end) (RangeReader.read);
raises RangeUnread when it could not read to the range's end in time."""
GAP_RETRY_MAX_S = 10.0
"""Longest pause between two tries to read offsets the stream skipped, while Kafka does not let
the read finish: the step waits for them (applying later hits first would lose them)."""
Acknowledge = Callable[[str, int, int, int], Awaitable[None]]
"""Tell the stream's consumer that offsets [start, end) of (topic, partition) are done though it
never delivered them (faust_committed.acknowledge_undelivered): it commits only past offsets it
counts as acknowledged, so without this its commits stop before them for good."""
StartOffset = Callable[[int], int]
"""Blocking: where the group starts reading a partition of `hits` (group_start_offset);
raises DeliveryError when Kafka does not answer in time."""
FindKey = Callable[[bytes, int], bool]
"""Blocking: whether `matches` holds a record with this key written at or after this time (ms)."""


class Seeder:
    """Seeds the offset guard of a partition of which nothing was applied yet (a new app, new
    partitions, a rebalance) with where the group reads it, so that even skipped first events
    count as skipped."""

    def __init__(
        self,
        guard: OffsetGuard,
        start_offset: StartOffset,
        *,
        retry_s: float = SEED_RETRY_S,
    ) -> None:
        self._guard = guard
        self._start_offset = start_offset
        self._retry_s = retry_s

    async def seed(self, partition: int, *, wait: bool) -> bool:
        """Seed `partition` if it needs it. Kafka may not answer (a broker restarting right after
        the rebalance it caused): with `wait` (the event in hand needs it) ask again every
        `retry_s` until it does; without (the timer) leave it to the next tick. False when the
        partition is still unseeded."""
        while self._guard.needs_seed(partition):
            try:
                start = await asyncio.to_thread(self._start_offset, partition)
            except DeliveryError as exc:
                log.warning("%s: %s; %s", STAGE, exc, "asking again" if wait else "at the next tick")
                if not wait:
                    return False
                await asyncio.sleep(self._retry_s)
                continue
            self._guard.seed(partition, start)
        return True


class Expiry:
    """Keeps the episode state bounded: now and then (`every_s`, per partition) deletes the
    partition's episodes unseen (wall clock) for `ttl_ms`. Only the event's own partition: a
    faust table deletes through that partition's changelog."""

    def __init__(
        self,
        tracker: EpisodeTracker,
        ttl_ms: int,
        *,
        every_s: float = EXPIRE_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._tracker = tracker
        self._ttl_ms = ttl_ms
        self._every_s = every_s
        self._monotonic = monotonic
        self._wall = wall
        self._swept: dict[int, float] = {}

    def after_hit(self, partition: int) -> int:
        """Called after each hit of `partition`; the first call only starts its period.
        Returns how many episodes were forgotten (0 between sweeps)."""
        now = self._monotonic()
        if now - self._swept.setdefault(partition, now) < self._every_s:
            return 0
        self._swept[partition] = now
        gone = self._tracker.expire(int(self._wall() * 1000) - self._ttl_ms, partition)
        if gone:
            log.info("%s: forgot %d episode(s) of partition %d unseen for %ds", STAGE, gone, partition,
                     self._ttl_ms // 1000)  # fmt: skip
        return gone


class CandidateOutput:
    """The step's output, `matches`: a candidate is published and acknowledged before its
    episode is confirmed; a repeat (a crash between the two) looks for it there first."""

    def __init__(self, send: Send, find_key: FindKey, *, wall: Callable[[], float] = time.time) -> None:
        self._send = send
        self._find_key = find_key
        self._wall = wall

    async def emit(self, candidate: Candidate) -> None:
        """Publish, wait for the acknowledgement, then count it."""
        await self._send(codec.MATCHES.encode(candidate), candidate.key, ())
        metrics.CANDIDATES.inc()
        metrics.OUTPUTS.labels(STAGE).inc()
        metrics.FRAME_TO_CANDIDATE_SECONDS.observe(
            max(0.0, self._wall() - candidate.ref.captured_at_ms / 1000)
        )

    async def published_before(self, opening: Opening) -> bool:
        """A repeat: is its candidate in `matches` already (a crash after publishing it)?"""
        since = opening.opened_at_ms - READBACK_MARGIN_MS
        found = await asyncio.to_thread(self._find_key, opening.candidate.key, since)
        log.info(
            "%s: candidate %s of an unconfirmed episode is %s",
            STAGE,
            opening.candidate.candidate_id,
            "already in matches: not published again" if found else "not in matches: publishing it",
        )
        return found


class HitApplier:
    """One hit's effect, in the order that makes `matches` exactly once across crashes:
    record the opening, make it durable (`flush_state`), publish the candidate, confirm it.
    A record that is not a hit goes to the dead-letter topic instead."""

    def __init__(
        self,
        tracker: EpisodeTracker,
        output: CandidateOutput,
        *,
        dead_letter: Send,
        flush_state: Callable[[], Awaitable[None]],
        expiry: Expiry,
    ) -> None:
        self._tracker = tracker
        self._output = output
        self._dead_letter = dead_letter
        self._flush_state = flush_state
        self._expiry = expiry

    async def apply(self, env: Envelope) -> None:
        try:
            hit = codec.HITS.decode(env.value)
        except InvalidMessage as error:
            await self.reject(env, error)
            return
        opening = self._tracker.track(hit, env.partition)
        if opening is not None:
            if opening.repeat:
                already = await self._output.published_before(opening)
            else:
                await self._flush_state()  # the unconfirmed opening is durable before the candidate
                already = False
            if not already:
                await self._output.emit(opening.candidate)
            self._tracker.confirm(hit)
        metrics.MESSAGES.labels(STAGE, "ok").inc()
        self._expiry.after_hit(env.partition)

    async def reject(self, env: Envelope, error: InvalidMessage) -> None:
        """Not a hit: to the DLQ with the runner's origin headers, so it can be found and replayed."""
        await self._dead_letter(env.value, env.key, dlq_headers(STAGE, env, error))
        metrics.DLQ.labels(STAGE, error.reason).inc()
        metrics.MESSAGES.labels(STAGE, "dlq").inc()
        log.warning("%s: %s/%d@%d to the DLQ: %s", STAGE, env.topic, env.partition, env.offset, error)


class OrderedApply:
    """The agent's step: applies each offset of `hits` once and in order, whatever faust
    delivers (offset_guard.py): duplicates are dropped, skipped offsets read and applied first."""

    def __init__(
        self,
        guard: OffsetGuard,
        seeder: Seeder,
        applier: HitApplier,
        read_range: ReadRange,
        acknowledge: Acknowledge,
    ) -> None:
        self._guard = guard
        self._seeder = seeder
        self._applier = applier
        self._read_range = read_range
        self._acknowledge = acknowledge

    async def handle(self, env: Envelope) -> None:
        """One delivered event; it may be acknowledged once this returns."""
        await self._seeder.seed(env.partition, wait=True)
        verdict = self._guard.check(env.partition, env.offset)
        if verdict is Verdict.GAP:
            await self.apply_skipped(env)
        if verdict is not Verdict.DUPLICATE:
            await self.apply_one(env)

    async def apply_one(self, env: Envelope) -> None:
        """Apply, then record the offset as applied (same table changelog, flushed before commit)."""
        await self._applier.apply(env)
        self._guard.done(env.partition, env.offset)

    async def apply_skipped(self, env: Envelope) -> None:
        """Offsets before `env` were not delivered: read them directly and apply them in order.
        Usually they hold nothing (transaction markers); a message found there was skipped.

        Then they are acknowledged to the consumer. faust fetched the skipped messages (so it saw
        no gap) but never delivered or acknowledged them, and commits only up to its first
        unacknowledged offset: the group's offset stayed before them while every later hit was
        applied, its lag grew, and a clean stop committed nothing past them (seen in a full
        suite run: tests/integration/test_matcher_episodes.py, committed 8 of 11)."""
        start = cast(int, self._guard.expected(env.partition))  # known: a gap was found against it
        delay = 0.5
        while True:
            try:
                missed = await asyncio.to_thread(
                    self._read_range, env.topic, env.partition, start, env.offset
                )
                break
            except RangeUnread as exc:
                log.warning("%s: skipped offsets not read yet, trying again in %.1fs: %s", STAGE, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, GAP_RETRY_MAX_S)
        if missed:
            log.warning(
                "%s: %s/%d: the stream skipped %d hit(s) at offsets %d..%d; applying them",
                STAGE, env.topic, env.partition, len(missed), start, env.offset - 1,
            )  # fmt: skip
        for skipped in missed:
            await self.apply_one(skipped)
        await self._acknowledge(env.topic, env.partition, start, env.offset)


class PartitionLike(Protocol):
    """A topic partition as faust's TP names it."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


class HitsConsumer(Protocol):
    """What the timer needs of the stream's consumer, limited to the `hits` partitions."""

    @property
    def rebalancing(self) -> bool: ...

    def assigned(self) -> list[PartitionLike]:
        """The partitions of `hits` this worker reads now."""
        ...

    def highwater(self, tp: PartitionLike) -> int | None:
        """The partition's end as last fetched; None before any fetch."""
        ...

    async def seek(self, tp: PartitionLike, offset: int) -> None: ...

    async def commit(self, tp: PartitionLike, offset: int) -> None:
        """Commit `offset` for the group, whether or not the stream delivered what lies before."""
        ...


class Unstaller:
    """The timer's step: a partition whose last events were skipped (nothing after them to
    reveal it, so `OrderedApply` never sees a gap) is noticed by its log end and read again.
    A partition that ends in transaction markers only is merely quiet."""

    def __init__(
        self,
        guard: OffsetGuard,
        seeder: Seeder,
        consumer: HitsConsumer,
        read_range: ReadRange,
        *,
        stall_s: float = STALL_S,
    ) -> None:
        self._guard = guard
        self._seeder = seeder
        self._consumer = consumer
        self._read_range = read_range
        self._stall_s = stall_s

    async def tick(self) -> None:
        """One look at every partition of `hits` this worker has; nothing while it rebalances."""
        if self._consumer.rebalancing:
            return
        mine = await self.seeded_partitions()
        ends = self.log_ends(mine)
        for partition, start in self._guard.stalled(ends, self._stall_s).items():
            tp = next(tp for tp in mine if tp.partition == partition)
            await self.recover(tp, start, ends[partition])

    async def seeded_partitions(self) -> list[PartitionLike]:
        """The assigned partitions whose start is known; one Kafka did not tell waits a tick."""
        return [tp for tp in self._consumer.assigned() if await self._seeder.seed(tp.partition, wait=False)]

    def log_ends(self, partitions: list[PartitionLike]) -> Mapping[int, int]:
        """partition -> its end, for those with one known and not empty."""
        ends = {tp.partition: self._consumer.highwater(tp) for tp in partitions}
        return {p: e for p, e in ends.items() if e is not None and e > 0}

    async def recover(self, tp: PartitionLike, start: int, end: int) -> None:
        """Read [start, end) directly: messages there were skipped, so seek back to them (the
        stream is idle, so the seek holds); nothing there, so the partition is only quiet."""
        self._guard.touch(tp.partition)
        try:
            found = await asyncio.to_thread(self._read_range, tp.topic, tp.partition, start, end)
        except RangeUnread as exc:  # not "nothing there": look again at a later tick
            log.info("%s: %s: offsets from %d not read yet: %s", STAGE, tp, start, exc)
            return
        if not found:
            self._guard.quiet(tp.partition, end)
            await self.commit_past_markers(tp, end)
            return
        log.warning("%s: %s: offsets from %d were not delivered; reading again", STAGE, tp, start)
        await self._consumer.seek(tp, start)

    async def commit_past_markers(self, tp: PartitionLike, end: int) -> None:
        """faust commits only offsets it delivered: a partition whose last records are
        transaction markers would stay one behind its end at rest (a lag that never clears)."""
        try:
            await self._consumer.commit(tp, end)
        except Exception as exc:  # only the lag figure suffers; the next hit's commit moves on
            log.debug("%s: %s: committing past its markers failed: %s", STAGE, tp, exc)


class EndReporter:
    """The end timer's step: publishes each episode that went quiet (stages/episodes.py) to
    `episodes.ended`, waits for the acknowledgement, then marks it reported. At least once: a
    crash between the two reports it again with the same content (de-duplicate on episode_id and
    hits). Reads and writes only the partitions of `hits` this worker has, so a standby copy of
    another's state is never reported."""

    def __init__(
        self, tracker: EpisodeTracker, send: Send, flush_state: Callable[[], Awaitable[None]]
    ) -> None:
        self._tracker = tracker
        self._send = send
        self._flush_state = flush_state

    async def tick(self, partitions: Collection[int]) -> int:
        """Report what is due in `partitions`; returns how many ends were published. The marks are
        flushed at the end, so a restart after the tick does not report them again."""
        due = self._tracker.ends_due(partitions) if partitions else []
        for item in due:
            await self._send(codec.EPISODES.encode(item.end), item.end.key, ())
            self._tracker.end_reported(item)
            metrics.EPISODES_ENDED.inc()
        if due:
            await self._flush_state()
            log.info("%s: %d episode(s) ended", STAGE, len(due))
        return len(due)
