"""The transport interface every stage runs on: an envelope, a consumer, a producer.

Kept deliberately small (arroyo's lesson) so that the in-process broker used by the
embedded mode and the Kafka transport are interchangeable, and the same contract tests
run against both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from facestream.errors import DeliveryError

Headers = tuple[tuple[str, bytes], ...]
TopicPartition = tuple[str, int]
Offsets = Mapping[TopicPartition, int]
"""Next offset to read, per (topic, partition): what a commit stores."""

AssignmentCallback = Callable[[list[TopicPartition]], None]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A consumed message and where it came from; the origin travels into DLQ headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """Where the group stands on one input partition: `done` is the next offset it will read
    (this client's position where it owns the partition, else the group's committed offset),
    `end` the partition's end."""

    done: int
    end: int

    @property
    def behind(self) -> bool:
        return self.done < self.end


class Consumer(Protocol):
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: AssignmentCallback | None = None,
        on_revoke: AssignmentCallback | None = None,
    ) -> None: ...

    def consume(self, max_messages: int, timeout_s: float) -> list[Envelope]:
        """Up to `max_messages`, waiting at most `timeout_s` for the first one."""
        ...

    def commit(self, offsets: Offsets) -> None:
        """Store the next offsets to read; synchronous, raises if the broker refuses."""
        ...

    def pause_all(self) -> None:
        """Stop fetching (e.g. gallery down) while staying in the group."""
        ...

    def resume_all(self) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Rejoining(Protocol):
    """A consumer whose client can stall or die for good and is then replaced by a new one that
    joins the group again: Kafka's (transport/kafka/consumer.py); the in-process broker's cannot. The runner
    watches its input for stalls and counts every replacement as a rejoin."""

    fatal_rejoins: int
    """Clients the consumer replaced by itself after a fatal error (a static member fenced)."""

    def progress(self) -> Mapping[TopicPartition, PartitionProgress] | None:
        """Where the group stands on every input partition; None when the broker does not answer."""
        ...

    def rejoin(self) -> None:
        """Leave the group and join it again with a new client."""
        ...


@runtime_checkable
class ReportsLag(Protocol):
    """A consumer that can say how far behind its input it is (both transports): the runner
    exports it as consumer lag."""

    def lag(self) -> Mapping[TopicPartition, int]:
        """Messages not yet consumed, per input partition this consumer owns."""
        ...


@runtime_checkable
class ReportsPositions(Protocol):
    """A consumer whose position can run ahead of its last commit with nothing to process in
    between (Kafka: transaction markers, aborted records); the runner commits up to it when idle
    so an input at rest shows no lag."""

    def positions(self) -> Mapping[TopicPartition, int]:
        """The next offset this client will read, per partition it owns."""
        ...


class CommitStrategy(Protocol):
    """Step 6 of the runner, the commit: at-least-once (runtime/commit.py) or in a Kafka
    transaction (transport/transactional.py). Here so the runner depends on neither."""

    def begin(self) -> None:
        """Before the batch's first output is produced."""
        ...

    def commit(self, offsets: Offsets) -> None:
        """After every output is flushed: make the batch (its offsets, in a transaction its
        outputs too) permanent; raise DeliveryError if that cannot be done."""
        ...

    def rollback(self, first: Offsets) -> bool:
        """Undo the batch and rewind to `first` (its first offsets) so it is read again.
        False: this strategy cannot undo anything (the runner must not go on)."""
        ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """One record the broker refused for what it is: `index` counts the producer's `produce`
    calls since its last `flush` (in a transaction: since `begin`), so the caller can tell which
    record it was. Transport-neutral so the runner can dead-letter it without importing Kafka."""

    index: int
    topic: str
    code: int
    reason: str
    too_large: bool = False
    """Over a size limit (the dead letter then says output_too_large, not output_refused)."""


class RecordRefused(DeliveryError):
    """Records were refused for what they are (transport/kafka/producer.py `RECORD_ERRORS`), by produce()
    itself or by the broker. Found by the broker inside a transaction, the refusal leaves the
    transaction able only to abort (checked on Kafka 4.1 with librdkafka 2.16): the batch must be
    written again without those records. A refusal in produce() leaves the transaction as it was."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        first = refusals[0]
        super().__init__(f"{len(refusals)} record(s) refused, first to {first.topic}: {first.reason}")
        self.refusals = tuple(refusals)


class Producer(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = ()) -> None: ...

    def flush(self, timeout_s: float) -> None:
        """Wait for every produced message to be acknowledged; raise DeliveryError otherwise."""
        ...

    def close(self) -> None: ...


def next_offsets(envelopes: Sequence[Envelope]) -> dict[TopicPartition, int]:
    """The commit that covers `envelopes`: one past the highest offset per partition."""
    offsets: dict[TopicPartition, int] = {}
    for env in envelopes:
        tp = (env.topic, env.partition)
        offsets[tp] = max(offsets.get(tp, 0), env.offset + 1)
    return offsets
