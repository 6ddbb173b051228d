"""Print facestream's candidates (`matches`), confirmed alerts and episode ends as JSON lines.

    python examples/consume_matches.py --bootstrap-servers kafka:9092 --topic-prefix city1.

A candidate is not yet an alert: act only on `alerts.confirmed` (two different reviewers
confirmed it). `--topics matches,episodes.ended` adds when each candidate's face was last seen
(`episodes.ended`, the face-gone event). Each line: {"topic", "partition", "offset", "key",
"subject", "value"}; an offset is committed after its line is written, so a restart neither
skips nor (normally) repeats one. Needs confluent-kafka and fastavro, and the schemas/ folder.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence

from confluent_kafka import Consumer
from kafka_client import add_kafka_args, consumer_config, records
from topic_schemas import NotAFacestreamMessage, TopicSchemas

SUBJECTS = {"matches": "matches", "episodes.ended": "episodes", "alerts.confirmed": "alerts"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_kafka_args(parser)
    parser.add_argument(
        "--topics", default="matches,alerts.confirmed", help="comma-separated, without prefix"
    )
    parser.add_argument("--max-messages", type=int, help="stop after this many (default: run until SIGTERM)")
    parser.add_argument("--stop-when-idle-s", type=float, help="stop after this long with nothing new")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.topics.split(",") if t.strip()]
    unknown = [t for t in names if t not in SUBJECTS]
    if unknown:
        parser.error(f"--topics: {', '.join(unknown)}: not one of {', '.join(SUBJECTS)}")
    schemas = TopicSchemas()
    consumer = Consumer(consumer_config(args, "example-consumer"))
    consumer.subscribe([args.topic_prefix + t for t in names])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    seen = 0
    try:
        for message in records(
            consumer,
            stopped=lambda: bool(stopping),
            stop_when_idle_s=args.stop_when_idle_s,
            on_error=lambda text: print(f"kafka: {text}", file=sys.stderr),
        ):
            topic = (message.topic() or "")[len(args.topic_prefix) :]
            line: dict[str, object] = {
                "topic": topic,
                "partition": message.partition(),
                "offset": message.offset(),
                "key": (message.key() or b"").decode(errors="replace"),
            }
            try:
                decoded = schemas.decode(message.value() or b"", SUBJECTS[topic])
                line.update(subject=decoded.subject, value=decoded.value)
            except NotAFacestreamMessage as exc:  # reported, not fatal: the next message still counts
                line.update(error=str(exc))
            print(json.dumps(line, sort_keys=True), flush=True)
            consumer.commit(message=message, asynchronous=False)
            seen += 1
            if args.max_messages is not None and seen >= args.max_messages:
                break
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
