"""Register facestream's topic schemas in a Confluent-compatible Schema Registry.

facestream needs no registry: each message's header carries the id its schema has in
schemas/index.json (topic_schemas.py reads the topics with the files alone). Tools that resolve
ids through a registry (Kafka Connect's AvroConverter, ksqlDB, kafka-avro-console-consumer) need
each of those ids to name the same schema there. This registers every version of every topic's
schema under the topic's subject (Confluent's default TopicNameStrategy: `<prefix><topic>-value`),
in the order of their ids, and checks that the registry gave each the id facestream writes.

An empty registry numbers schemas 1, 2, ... in the order they arrive, which are index.json's ids.
A registry that already holds other schemas numbers them otherwise: then this stops at the first
schema whose id differs and says so (registering facestream's ids there needs Confluent's IMPORT
mode, which this script does not do). Run again, it changes nothing: a registry answers the id it
gave before for a schema it has.

    python examples/register_schemas.py --registry URL [--topic-prefix P] [--dry-run]

Exit status: 0 every schema registered under facestream's id; 1 the registry refused, could not
be reached, or gave another id; 2 a bad argument.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"

TOPIC_OF_SUBJECT = {
    "cameras": "cameras",
    "frames": "frames",
    "faces": "faces",
    "embeddings": "embeddings",
    "hits": "hits",
    "matches": "matches",
    "episodes": "episodes.ended",
    "reviews": "reviews",
    "alerts": "alerts.confirmed",
}
"""The topic each schema subject of schemas/ is written to (the rest, audit and dead letters, are
not Avro)."""

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """The registry refused a call, could not be reached, or gave an id facestream does not write."""


@dataclass(frozen=True)
class Registration:
    schema_id: int
    subject: str  # the registry's: <prefix><topic>-value
    path: str  # in schemas/, e.g. cameras/v2.avsc
    schema: str  # the .avsc as compact JSON


def registrations(topic_prefix: str = "", schemas_dir: Path = SCHEMAS_DIR) -> list[Registration]:
    """Every schema of index.json, in id order, with the subject it is registered under."""
    index = json.loads((schemas_dir / "index.json").read_text())["schemas"]
    out = []
    for schema_id, path in sorted(index.items(), key=lambda item: int(item[0])):
        topic = TOPIC_OF_SUBJECT[path.split("/")[0]]
        text = json.dumps(json.loads((schemas_dir / path).read_text()), separators=(",", ":"))
        out.append(Registration(int(schema_id), f"{topic_prefix}{topic}-value", path, text))
    return out


def register(registry: str, item: Registration, timeout_s: float = 10.0) -> int:
    """POST the schema under its subject; the id the registry answers."""
    url = f"{registry.rstrip('/')}/subjects/{urllib.parse.quote(item.subject, safe='')}/versions"
    body = json.dumps({"schema": item.schema, "schemaType": "AVRO"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return int(json.load(reply)["id"])
    except urllib.error.HTTPError as exc:
        raise RegistryError(
            f"{item.subject}: the registry refused {item.path}: HTTP {exc.code} {_reason(exc)}"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryError(f"cannot reach the registry at {registry}: {reason}") from None
    except (ValueError, KeyError):
        raise RegistryError(f"{item.subject}: the registry's answer holds no schema id") from None


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc).get("message", ""))[:200]
    except ValueError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", required=True, help="the registry's URL, e.g. http://registry:8081")
    parser.add_argument(
        "--topic-prefix", default="", help="facestream's topic prefix (FACESTREAM_KAFKA_TOPIC_PREFIX)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be registered, register nothing"
    )
    args = parser.parse_args(argv)
    if not args.registry.startswith(("http://", "https://")):
        parser.error(f"--registry must be an http(s):// URL, not {args.registry!r}")
    for item in registrations(args.topic_prefix):
        if args.dry_run:
            print(f"{item.subject}: {item.path} (id {item.schema_id})")
            continue
        try:
            given = register(args.registry, item)
        except RegistryError as exc:
            print(f"register_schemas: {exc}", file=sys.stderr)
            return 1
        if given != item.schema_id:
            print(
                f"register_schemas: {item.subject}: the registry gave {item.path} id {given}, but "
                f"facestream's messages carry id {item.schema_id}: this registry already numbers other "
                "schemas; use an empty registry (or Confluent's IMPORT mode)",
                file=sys.stderr,
            )
            return 1
        print(f"{item.subject}: {item.path} registered as id {given}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
