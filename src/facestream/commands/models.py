"""`facestream models`: fetch and verify the model files."""

from __future__ import annotations

import argparse
from typing import Any

from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.settings import ModelSettings


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="fetch and verify model files")
    msub = p.add_subparsers(
        dest="models_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    fetch = msub.add_parser("fetch", help="download and verify the built-in models (idempotent)")
    fetch.add_argument("--force", action="store_true", help="download again even if verified")
    add_settings(fetch, ModelSettings)
    fetch.set_defaults(handler=fetch_models)


def fetch_models(args: argparse.Namespace) -> int:
    from facestream.vision.models import fetch_builtin_models

    model_s = settings_from(args, ModelSettings)
    for path in fetch_builtin_models(model_s.model_dir, force=args.force):
        emit({"model": path.stem, "path": str(path), "verified": True})
    return 0
