"""Records around every size limit, through the real runner on the real broker: no record, whatever
its size or its outputs' sizes, makes the runner raise or retry forever.

A synthetic stage (`Sizer`) turns each input into the outputs its header asks for: of a given
size, with or without a key. Its output topic is compacted (a record without a key is refused
there as INVALID_RECORD) and, in some examples, limited below the catalogue (a topic's
max.message.bytes set lower by an operator). Inputs are written by a foreign producer that may
write what facestream's producers never do. Sizes sit just under, at and over each limit: the
producer's (`MAX_RECORD_BYTES`), the output topic's, the broker's (`MAX_BATCH_BYTES`).

Afterwards every input the broker took is accounted for exactly once: its outputs (each once)
or one dead letter with the right reason and origin headers, whole or with its payload cut;
the runner committed past all of them, and each refusal cost a bounded number of rollbacks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Producer as CKProducer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from facestream.errors import InvalidMessage
from facestream.runtime.runner import (
    OUTPUT_REFUSED,
    OUTPUT_TOO_LARGE,
    RECORD_TOO_LARGE,
    DeadLetterRefused,
    LoopPolicy,
    Route,
    StageRunner,
)
from facestream.settings import KafkaSettings
from facestream.transport.base import Envelope
from facestream.transport.kafka import (
    KafkaConsumer,
    TransactionalProducer,
    client_config,
    create_missing_topics,
)
from facestream.transport.topics import DEAD_LETTER_KEEP_BYTES, MAX_BATCH_BYTES, MAX_RECORD_BYTES
from facestream.transport.transactional import Transactional
from tests.fixtures.kafka import committed_offsets, delete_topics, end_offsets, read_topic
from tests.fuzz.strategies import fuzz

P = MAX_RECORD_BYTES
B = MAX_BATCH_BYTES
T = 2_000_000
"""The output topic's max.message.bytes in the examples that lower it."""
FRAMING = 36
"""What librdkafka adds to key + value when it checks a record against message.max.bytes."""

INPUT_SIZES = {
    "small": 1_000,
    "under producer, dead letter fits": P - 2_000,
    "under producer, dead letter does not fit": P - 100,
    "at producer": P,
    "over producer": P + 1,
    "under broker": B - 200,
    "at broker": B,
    "over broker": B + 1_000,
}
"""Key + value of an input record."""
OUTPUT_SIZES = {
    "small": 100,
    "under topic": T - 1_000,
    "over topic": T + 1,
    "at producer": P - FRAMING,
    "over producer": P - FRAMING + 1,
}
"""Key + value of an output record."""
BAD_INPUT = "bad_input"


@dataclass(frozen=True)
class Ask:
    """What one input asks the stage for."""

    id: str
    invalid: bool
    outputs: tuple[tuple[int, bool], ...]
    """(key + value bytes, keyless) per output."""


@dataclass(frozen=True)
class Blob:
    key: bytes | None
    value: bytes


class AskCodec:
    """An input: a JSON line saying what to output, padded to the size the example wants."""

    MAGIC = b"ASK\n"

    def encode(self, ask: Ask, total: int, key: bytes) -> bytes:
        head = self.MAGIC + json.dumps([ask.id, ask.invalid, ask.outputs]).encode() + b"\n"
        return head + b"." * (total - len(key) - len(head))

    def decode(self, data: bytes) -> Ask:
        if not data.startswith(self.MAGIC):
            raise InvalidMessage("undecodable", "no ASK header")
        rid, invalid, outputs = json.loads(data[len(self.MAGIC) : data.index(b"\n", len(self.MAGIC))])
        return Ask(rid, invalid, tuple((size, keyless) for size, keyless in outputs))


class BlobCodec:
    def encode(self, blob: Blob) -> bytes:
        return blob.value


class Sizer:
    def __init__(self) -> None:
        self.name = f"sizer-{uuid.uuid4().hex[:8]}"

    def process(self, items: Sequence[Ask]) -> list[list[Blob] | InvalidMessage]:
        return [InvalidMessage(BAD_INPUT, "asked to be") if ask.invalid else blobs(ask) for ask in items]


def blobs(ask: Ask) -> list[Blob]:
    out = []
    for j, (total, keyless) in enumerate(ask.outputs):
        key = None if keyless else f"{ask.id}/{j}".encode()
        out.append(Blob(key, b"o" * (total - len(key or b""))))
    return out


def refusal_of(total: int, keyless: bool, lowered: bool) -> str | None:
    """The dead-letter reason an output of `total` bytes brings its input, or None if it is written."""
    if total + FRAMING > P or (lowered and total > T):
        return OUTPUT_TOO_LARGE
    return OUTPUT_REFUSED if keyless else None


@dataclass
class Sent:
    ask: Ask
    key: bytes
    value: bytes
    offset: int | None
    """None: the broker refused the input itself."""


def write_inputs(settings: KafkaSettings, topic: str, inputs: list[tuple[Ask, int]]) -> list[Sent]:
    """Written by a producer that is not facestream's: up to what the broker takes, in order."""
    producer = CKProducer({**client_config(settings), "message.max.bytes": 2 * B, "linger.ms": 0})
    sent: list[Sent] = []
    for ask, total in inputs:
        key = ask.id.encode()
        value = AskCodec().encode(ask, total, key)
        landed: list[Any] = []
        producer.produce(topic, value, key=key, on_delivery=lambda e, m, got=landed: got.append((e, m)))
        assert producer.flush(60) == 0
        [(error, message)] = landed
        sent.append(Sent(ask, key, value, None if error is not None else message.offset()))
        if error is not None:
            assert error.name() == "MSG_SIZE_TOO_LARGE", error
    return sent


def errors(stage: str, kind: str) -> float:
    return REGISTRY.get_sample_value("facestream_stage_errors_total", {"stage": stage, "kind": kind}) or 0.0


asks = st.tuples(
    st.sampled_from(sorted(INPUT_SIZES)),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(sorted(OUTPUT_SIZES)), st.booleans()), max_size=2),
)


@fuzz(4)
@given(batch=st.lists(asks, min_size=1, max_size=3), lowered=st.booleans())
@example(  # every input limit, a bad input on each side of "its dead letter fits whole"
    batch=[
        ("under producer, dead letter fits", True, []),
        ("at producer", True, []),
        ("over producer", False, [("small", False)]),
        ("under broker", False, []),
        ("at broker", False, []),
        ("over broker", False, []),
        ("small", False, [("small", False)]),
    ],
    lowered=False,
)
@example(  # the producer's limit on outputs: the largest it takes, and one byte more
    batch=[
        ("small", False, [("at producer", False)]),
        ("under producer, dead letter does not fit", False, [("over producer", False)]),
        ("small", False, [("small", False)]),
    ],
    lowered=False,
)
@example(  # the output topic's limit, and an invalid record sharing its batch with another input's
    batch=[
        ("small", False, [("under topic", False), ("over topic", False)]),
        ("small", False, [("small", False)]),
        ("small", False, [("small", True)]),
        ("under producer, dead letter fits", False, [("over topic", False)]),
        ("small", False, [("small", False)]),
    ],
    lowered=True,
)
def test_no_record_size_stops_or_loops_the_runner(
    kafka_broker: KafkaSettings, batch: list[tuple[str, bool, list[tuple[str, bool]]]], lowered: bool
) -> None:
    out_config = {"cleanup.policy": "compact", **({"max.message.bytes": str(T)} if lowered else {})}
    inputs = [
        (
            Ask(f"r{i}", invalid, tuple((OUTPUT_SIZES[size], keyless) for size, keyless in outputs)),
            INPUT_SIZES[name],
        )
        for i, (name, invalid, outputs) in enumerate(batch)
    ]
    with sizer(kafka_broker, out_config, {"max.message.bytes": str(B)}) as world:
        sent = write_inputs(world.settings, world.source, inputs)
        world.run_until_committed()
        check(world.settings, sent, world.out, world.dlq, lowered, world.stage)


def test_a_dead_letter_the_dlq_topic_refuses_cut_is_written_without_payload(
    kafka_broker: KafkaSettings,
) -> None:
    """A dead-letter topic limited below `DEAD_LETTER_KEEP_BYTES` refuses the whole and the cut letter."""
    with sizer(kafka_broker, {}, {"max.message.bytes": "20000"}) as world:
        asked = [(Ask("bad", True, ()), 30_000), (Ask("good", False, ((100, False),)), 200)]
        [bad, _] = write_inputs(world.settings, world.source, asked)
        world.run_until_committed()
        [letter] = read_topic(world.settings, world.dlq, 1, timeout_s=30)
        [output] = read_topic(world.settings, world.out, 1, timeout_s=30)
    h = {k: v.decode() for k, v in letter.headers}
    assert (h["fs.dlq.reason"], h["fs.dlq.offset"]) == (BAD_INPUT, str(bad.offset))
    assert (h["fs.dlq.payload"], h["fs.dlq.payload_bytes"]) == ("omitted", str(len(bad.value)))
    assert (letter.key, letter.value) == (bad.key, b"")
    assert output.key == b"good/0"
    assert errors(world.stage, "refused") == 2  # the whole letter, then the cut one


def test_a_dead_letter_topic_that_refuses_even_an_empty_letter_stops_the_stage(
    kafka_broker: KafkaSettings,
) -> None:
    """Misconfigured (compacted: it refuses every record without a key), it refuses every letter, not
    one: an operator must fix it, so the stage stops without committing rather than drop the record."""
    with sizer(kafka_broker, {}, {"cleanup.policy": "compact"}) as world:
        producer = CKProducer(client_config(world.settings))
        producer.produce(world.source, AskCodec().encode(Ask("k", True, ()), 100, b""), key=None)
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 120
        with pytest.raises(DeadLetterRefused, match="without payload"):
            while time.monotonic() < deadline:
                world.runner.run_once()
        assert committed_offsets(world.settings, world.group, world.source) == {}


@dataclass
class World:
    settings: KafkaSettings
    source: str
    out: str
    dlq: str
    group: str
    stage: str
    runner: StageRunner[Any, Any]

    def run_until_committed(self) -> None:
        end = end_offsets(self.settings, self.source)[0]
        deadline = time.monotonic() + 240
        while committed_offsets(self.settings, self.group, self.source).get(0, 0) < end:
            assert time.monotonic() < deadline, "the runner did not get past its input"
            self.runner.run_once()


@contextmanager
def sizer(
    kafka_broker: KafkaSettings, out_config: dict[str, str], dlq_config: dict[str, str]
) -> Iterator[World]:
    """The `Sizer` stage in a real runner (transactions, read_committed) on topics of its own."""
    prefix = f"t{uuid.uuid4().hex[:12]}."
    settings = kafka_broker.model_copy(update={"topic_prefix": prefix})
    source, out, dlq = f"{prefix}in", f"{prefix}out", f"{prefix}dlq"
    create_missing_topics(
        settings,
        [
            NewTopic(source, num_partitions=1, replication_factor=-1, config={"max.message.bytes": str(B)}),
            NewTopic(out, num_partitions=1, replication_factor=-1, config=out_config),
            NewTopic(dlq, num_partitions=1, replication_factor=-1, config=dlq_config),
        ],
    )
    stage = Sizer()
    group = f"{prefix}group"
    consumer = KafkaConsumer(settings, group)
    producer = TransactionalProducer(settings, f"{group}.0", timeout_s=10)
    runner = StageRunner(
        stage,
        Route(source, AskCodec(), out, BlobCodec(), dlq),  # type: ignore[arg-type]
        consumer,
        producer,
        policy=LoopPolicy(
            batch_size=10, batch_timeout_s=1.0, max_invalid_ratio=1.0, retry_max_s=1.0, stall_s=0
        ),
        commit=Transactional(consumer, producer),
    )
    try:
        runner.start()
        yield World(settings, source, out, dlq, group, stage.name, runner)
    finally:
        producer.close()
        consumer.close()
        delete_topics(settings, prefix)


def check(settings: KafkaSettings, sent: list[Sent], out: str, dlq: str, lowered: bool, stage: str) -> None:
    landed = [s for s in sent if s.offset is not None]
    for s in sent:  # what the broker refused never reached the stage
        assert (s.offset is None) == (len(s.key) + len(s.value) >= B), (len(s.value), s.offset)
    expected_outputs: dict[bytes, int] = {}
    expected_letters: dict[int, tuple[set[str], bool]] = {}  # offset -> (reasons, whole)
    for s in landed:
        assert s.offset is not None
        size = len(s.key) + len(s.value)
        reasons = {refusal_of(total, keyless, lowered) for total, keyless in s.ask.outputs} - {None}
        if size > P:
            expected_letters[s.offset] = ({RECORD_TOO_LARGE}, False)
        elif s.ask.invalid or reasons:
            # A whole dead letter is the input and its headers (a few hundred bytes) under the limit.
            fits = size <= P - 2_000
            assert fits or size >= P - 100, "a size whose letter may or may not fit: not a test case"
            expected_letters[s.offset] = ({BAD_INPUT} if s.ask.invalid else {r for r in reasons if r}, fits)
        else:
            for blob in blobs(s.ask):
                assert blob.key is not None
                expected_outputs[blob.key] = len(blob.value)

    letters = read_topic(settings, dlq, len(expected_letters), timeout_s=30)
    outputs = read_topic(settings, out, len(expected_outputs), timeout_s=30)
    assert sorted((e.key or b"", len(e.value)) for e in outputs) == sorted(expected_outputs.items())
    by_offset: dict[int, Envelope] = {}
    for letter in letters:
        h = {k: v.decode() for k, v in letter.headers}
        offset = int(h["fs.dlq.offset"])
        assert offset not in by_offset, f"two dead letters of offset {offset}"
        by_offset[offset] = letter
    assert sorted(by_offset) == sorted(expected_letters)
    inputs = {s.offset: s for s in landed}
    for offset, letter in by_offset.items():
        reasons, whole = expected_letters[offset]
        original = inputs[offset]
        h = {k: v.decode() for k, v in letter.headers}
        assert h["fs.dlq.reason"] in reasons, (h, reasons)
        assert (h["fs.dlq.stage"], h["fs.dlq.partition"]) == (stage, "0")
        assert h["fs.dlq.topic"] == out.removesuffix("out") + "in"
        if whole:
            assert "fs.dlq.payload" not in h
            assert (letter.key, letter.value) == (original.key, original.value)
        else:
            assert h["fs.dlq.payload"] == "truncated"
            assert h["fs.dlq.payload_bytes"] == str(len(original.value))
            assert letter.value == original.value[:DEAD_LETTER_KEEP_BYTES]
    # Bounded: each refused record costs a few rollbacks (sent alone, letter cut), not one per retry.
    assert errors(stage, "refused") <= 4 * len(landed)
