"""The topic catalogue: names, partitions, retention, and what each topic may hold.

Retention is part of the privacy design: frames, faces and embeddings of people who did
not match exist nowhere but in these topics, and only for minutes. Every topic sets both
retention.ms and segment.ms, because Kafka deletes whole closed segments only: a
10-minute retention with the default 7-day segment would keep frames for a week.

The size limits are set here and nowhere else: the producers' and consumers' configs
(transport/kafka/producer.py and consumer.py), every topic's max.message.bytes
(`TopicSpec.config`), the broker's (scripts/kafka.sh reads the `MAX_BATCH_BYTES = <number>` line
below) and the runner's input cap and dead letters (runtime/runner.py) all use them;
docs/delivery.md says what happens at each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

MAX_RECORD_BYTES = 10_000_000
"""The largest record a facestream producer writes: librdkafka's message.max.bytes, which counts
key + value + headers + about 36 B of framing and refuses a larger record in produce() itself.
It is also every stage's input cap: a record larger than this came from some other producer,
cannot be dead-lettered whole, and goes to the DLQ undecoded (`record_too_large`), its payload
cut to `DEAD_LETTER_KEEP_BYTES`. A 1920-pixel-wide JPEG frame is typically a few hundred kB."""

MAX_BATCH_BYTES = 10_485_760
"""The largest record batch Kafka takes (10 MiB): the broker's message.max.bytes and
replica.fetch.max.bytes and every catalogue topic's max.message.bytes. It is 485,760 B above
`MAX_RECORD_BYTES`, so a batch holding one record of that size (about 80 B of batch framing) always
fits; several records share a batch only up to `PRODUCER_BATCH_BYTES`. Records between the two
limits can only come from producers other than facestream's."""

PRODUCER_BATCH_BYTES = 1_000_000
"""The producers' batch.size (librdkafka's default, stated): records share a batch up to this size,
a larger record goes in a batch of its own. A topic's max.message.bytes must not be set below it:
Kafka refuses a whole batch, and records that fit one by one would be refused together (the
runner then sends them one by one to find the culprit, which is slow)."""

FETCH_MAX_BYTES = 5 * MAX_BATCH_BYTES
"""The consumers' fetch.max.bytes (librdkafka's default, stated): at least one batch of the largest
size. A batch larger than a partition's fetch size is returned all the same (KIP-74)."""

DEAD_LETTER_KEEP_BYTES = 65_536
"""What a dead letter keeps of a payload too large to dead-letter whole (and of its key): the start
of an Avro record, which holds its frame reference (camera, frame id, capture time)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    segment_ms: int
    cleanup_policy: Literal["delete", "compact"] = "delete"
    holds: str = ""

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "segment.ms": str(self.segment_ms),
            "max.message.bytes": str(MAX_BATCH_BYTES),
        }


CAMERAS = "cameras"
FRAMES = "frames"
FACES = "faces"
EMBEDDINGS = "embeddings"
HITS = "hits"
MATCHES = "matches"
EPISODES_ENDED = "episodes.ended"
REVIEWS = "reviews"
ALERTS_CONFIRMED = "alerts.confirmed"
AUDIT = "audit"
AUDIT_MIN_RETENTION_MS = 183 * DAY_MS
"""EU AI Act Art. 19/26(6): logs of a high-risk system are kept at least six months."""


def dlq(stage: str) -> str:
    return f"dlq.{stage}"


STAGES = ("frame-sampler", "detector", "embedder", "matcher", "episodes", "review")

CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec(
        CAMERAS,
        12,
        -1,
        DAY_MS,
        "compact",
        "camera configs, key = camera id; the sampler group shares its partitions",
    ),
    TopicSpec(FRAMES, 12, 10 * MINUTE_MS, 2 * MINUTE_MS, holds="JPEG frames of everyone in view"),
    TopicSpec(FACES, 12, 10 * MINUTE_MS, 2 * MINUTE_MS, holds="aligned crops of everyone in view"),
    TopicSpec(EMBEDDINGS, 12, 10 * MINUTE_MS, 2 * MINUTE_MS, holds="vectors of everyone in view"),
    TopicSpec(HITS, 6, HOUR_MS, 10 * MINUTE_MS, holds="faces that matched a watchlist entry"),
    TopicSpec(MATCHES, 6, DAY_MS, HOUR_MS, holds="candidates awaiting review (the review window)"),
    TopicSpec(
        EPISODES_ENDED, 6, DAY_MS, HOUR_MS, holds="ends of candidates' episodes: times, hit counts (no image)"
    ),
    TopicSpec(
        REVIEWS, 6, DAY_MS, HOUR_MS, holds="reviewer decisions (candidate id, reviewer, confirm/reject)"
    ),
    TopicSpec(ALERTS_CONFIRMED, 3, 30 * DAY_MS, DAY_MS, holds="alerts two reviewers confirmed"),
    TopicSpec(
        AUDIT,
        1,
        400 * DAY_MS,
        DAY_MS,
        holds="hash-chained audit records (ids and counts, no images); never compacted",
    ),
    *(
        TopicSpec(dlq(stage), 1, HOUR_MS, 10 * MINUTE_MS, holds=f"messages {stage} could not process")
        for stage in STAGES
    ),
)


def catalogue(
    prefix: str = "",
    partitions: dict[str, int] | None = None,
    retention_ms: dict[str, int] | None = None,
) -> list[TopicSpec]:
    """The catalogue with a name prefix and per-topic overrides applied."""
    partitions = partitions or {}
    retention_ms = retention_ms or {}
    unknown = (set(partitions) | set(retention_ms)) - {t.name for t in CATALOGUE}
    if unknown:
        raise ValueError(f"unknown topic(s): {', '.join(sorted(unknown))}")
    out = []
    for spec in CATALOGUE:
        retention = retention_ms.get(spec.name, spec.retention_ms)
        if spec.name == AUDIT and 0 <= retention < AUDIT_MIN_RETENTION_MS:
            raise ValueError("audit retention must be at least six months (183 days) or -1")
        segment = spec.segment_ms if retention < 0 else min(spec.segment_ms, max(retention // 5, 1000))
        out.append(
            TopicSpec(
                prefix + spec.name,
                partitions.get(spec.name, spec.partitions),
                retention,
                segment,
                spec.cleanup_policy,
                spec.holds,
            )
        )
    return out
