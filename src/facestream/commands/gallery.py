"""`facestream gallery`: enroll, list and remove watchlist identities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.errors import ConfigError
from facestream.settings import DetectorSettings, EmbedderSettings, GallerySettings, ModelSettings


def register(sub: Any) -> None:
    p = sub.add_parser("gallery", help="enroll, list and remove watchlist identities")
    gsub = p.add_subparsers(dest="gallery_command", required=True, parser_class=OneLineParser)
    enroll = gsub.add_parser(
        "enroll",
        help="enroll an identity from one or more photos",
        description="Enroll an identity: each photo must show one clear face.",
    )
    enroll.add_argument("--identity", required=True, help="name of the person (1-128 characters)")
    enroll.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    add_settings(enroll, GallerySettings, DetectorSettings, EmbedderSettings, ModelSettings)
    enroll.set_defaults(handler=enroll_photos)
    listing = gsub.add_parser("list", help="list enrolled entries, one JSON object each")
    add_settings(listing, GallerySettings)
    listing.set_defaults(handler=list_entries)
    remove = gsub.add_parser("remove", help="remove an identity and all its entries")
    remove.add_argument("--identity", required=True, help="name of the person")
    add_settings(remove, GallerySettings)
    remove.set_defaults(handler=remove_identity)


def enroll_photos(args: argparse.Namespace) -> int:
    from facestream.gallery.enroll import Enroller
    from facestream.gallery.store import Gallery
    from facestream.vision.factory import build_embedder, build_finder

    gallery_s = settings_from(args, GallerySettings)
    model_s = settings_from(args, ModelSettings)
    embedder = build_embedder(settings_from(args, EmbedderSettings), model_s)
    finder = build_finder(settings_from(args, DetectorSettings), model_s)
    gallery = Gallery(gallery_s, dim=embedder.dim)
    try:
        result = Enroller(finder, embedder, gallery, gallery_s).enroll(args.identity, list(args.photos))
    finally:
        gallery.close()
    emit(
        {
            "identity": result.identity,
            "entries": [
                {"photo": p.photo, "entry_id": p.entry_id, "det_score": p.det_score, "size_px": p.size_px}
                for p in result.photos
            ],
        }
    )
    return 0


def list_entries(args: argparse.Namespace) -> int:
    from facestream.gallery.store import Gallery

    gallery = Gallery(settings_from(args, GallerySettings))
    try:
        for entry in gallery.entries():
            emit(
                {
                    "identity": entry.identity,
                    "entry_id": entry.entry_id,
                    "model_id": entry.model_id,
                    "authorisation_id": entry.authorisation_id,
                    "enrolled_at_ms": entry.enrolled_at_ms,
                    "valid_until_ms": entry.valid_until_ms,
                }
            )
    finally:
        gallery.close()
    return 0


def remove_identity(args: argparse.Namespace) -> int:
    from facestream.gallery.store import Gallery

    gallery = Gallery(settings_from(args, GallerySettings))
    try:
        removed = gallery.remove_identity(args.identity)
    finally:
        gallery.close()
    if not removed:
        raise ConfigError(f"identity {args.identity!r} is not enrolled")
    emit({"identity": args.identity, "removed_entries": removed})
    return 0
