"""The `facestream` command: the embedded pipeline, the gallery, set-up, and every service.

stdout carries only results (JSON lines); logs and errors go to stderr, so the output can
be piped into other tools.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from facestream import __version__
from facestream.cliargs import OneLineParser, fail
from facestream.commands import (
    audit,
    authorisation,
    cluster,
    demo,
    gallery,
    health,
    identify,
    kafka_admin,
    models,
    report,
    roles,
    rules,
    services,
)
from facestream.errors import ConfigError, FacestreamError

COMMANDS = (
    identify,
    gallery,
    models,
    kafka_admin,
    health,
    services,
    audit,
    report,
    authorisation,
    roles,
    rules,
    demo,
    cluster,
)

QUIET_LOGGERS = ("faiss", "faiss.loader", "milvus_lite", "pymilvus")


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="facestream",
        description="Real-time face recognition for city camera networks, with accountability built in.",
    )
    parser.add_argument("--version", action="version", version=f"facestream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        fail(str(exc), 2)
    except FacestreamError as exc:
        fail(str(exc), 1)


if __name__ == "__main__":
    raise SystemExit(main())
