"""`facestream health`: an exec probe over a service's liveness file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("health", help="exit 0 if a service's liveness file is fresh (for exec probes)")
    p.add_argument("--liveness-file", required=True, type=Path, help="the service's liveness file")
    p.add_argument("--max-age-s", type=float, default=60.0, help="fail if older than this (default 60)")
    p.set_defaults(handler=check)


def check(args: argparse.Namespace) -> int:
    from facestream.runtime.health import liveness_file_fresh

    if liveness_file_fresh(args.liveness_file, args.max_age_s):
        return 0
    sys.stderr.write(f"facestream: {args.liveness_file} is missing or older than {args.max_age_s}s\n")
    return 1
