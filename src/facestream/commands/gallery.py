"""`facestream gallery`: enroll, list, remove and re-embed watchlist identities; serve-lite runs the
chart's gallery pod (gallery/lite_server.py).

Enrolling needs the `officer` role and an authorisation in force (`--authorisation ID`);
the entries carry its id and end of validity, and the photos are kept encrypted for
re-embedding. Every change is audited. Opening the gallery first purges what has ended.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings, PhotoSettings
from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.errors import ConfigError, EnrollmentRefused, FacestreamError
from facestream.settings import DetectorSettings, EmbedderSettings, GallerySettings, ModelSettings

if TYPE_CHECKING:
    from facestream.accountability.audit import Actor
    from facestream.accountability.authorisations import Authorisation
    from facestream.accountability.enrolling import AuditedEnroller
    from facestream.gallery.enroll import Enrollment
    from facestream.gallery.enroll_folder import BulkIdentity

log = logging.getLogger(__name__)

_ENROLLING_SETTINGS = (
    GallerySettings,
    AccountabilitySettings,
    PhotoSettings,
    DetectorSettings,
    EmbedderSettings,
    ModelSettings,
    AUDIT_SIGNING,
)
"""What embedding photos into the gallery reads: `enroll`, `enroll-bulk` and `reembed`."""


def identity_arg(value: str) -> str:
    """--identity checked as an argument: a malformed name is a usage error (exit 2), for every
    subcommand alike, before any model or gallery is opened."""
    from facestream.gallery.enroll import check_identity

    try:
        return check_identity(value)
    except EnrollmentRefused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: Any) -> None:
    from facestream.accountability.roles import add_actor_flag

    p = sub.add_parser("gallery", help="enroll, list, remove and re-embed watchlist identities")
    gsub = p.add_subparsers(
        dest="gallery_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    enroll = gsub.add_parser(
        "enroll",
        help="enroll an identity from one or more photos, under an authorisation (role officer)",
        description="Enroll an identity under an authorisation in force: each photo must show one "
        "clear face. The photos are kept encrypted, only to re-embed them when the model changes.",
    )
    enroll.add_argument(
        "--identity", required=True, type=identity_arg, help="name of the person (1-128 characters)"
    )
    enroll.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    _add_enrolling_flags(enroll)
    enroll.set_defaults(handler=enroll_photos)
    bulk = gsub.add_parser(
        "enroll-bulk",
        help="enroll every identity of a folder (one subfolder per person, named after them, holding "
        "their photos) or of a CSV manifest (identity,photo rows) (role officer)",
        description="Enroll each subfolder of FOLDER as the identity it is named after, from the photos "
        "in it (.jpg, .jpeg, .png, .bmp, .webp), or each identity of a --manifest file, under one "
        "authorisation in force, with the models loaded once. An identity refused (a photo without "
        "one clear face, a bad name, no photos, a photo missing) is reported and the rest go on; "
        "each enrolled one is audited before the next begins. Stdout: one JSON object per "
        "identity, then a summary. Exit 1 if any was refused.",
    )
    listed = bulk.add_mutually_exclusive_group(required=True)
    listed.add_argument("folder", type=Path, nargs="?", metavar="FOLDER")
    listed.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help="a CSV file with a header naming the columns identity and photo, one row per photo "
        "(paths relative to the file's folder), instead of FOLDER",
    )
    bulk.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything enrolling checks (your role, the authorisation, the photo key, each "
        "photo's one clear face) and write nothing: no entry, photo or audit record",
    )
    _add_enrolling_flags(bulk)
    bulk.set_defaults(handler=enroll_folder)
    listing = gsub.add_parser("list", help="list enrolled entries, one JSON object each (officer/auditor)")
    add_actor_flag(listing)
    add_settings(listing, GallerySettings, AccountabilitySettings, AUDIT_SIGNING)
    listing.set_defaults(handler=list_entries)
    remove = gsub.add_parser("remove", help="remove an identity: its entries and photos (role officer)")
    remove.add_argument("--identity", required=True, type=identity_arg, help="name of the person")
    add_actor_flag(remove)
    add_settings(remove, GallerySettings, AccountabilitySettings, AUDIT_SIGNING)
    remove.set_defaults(handler=remove_identity)
    reembed = gsub.add_parser(
        "reembed",
        help="re-embed every entry in force from its kept photo with the configured model (role officer)",
        description="After a model change: enroll each kept photo again with the model given by the "
        "embedder flags, under the same identity and authorisation; with --drop-old, then remove "
        "the entries of other models.",
    )
    reembed.add_argument("--drop-old", action="store_true", help="remove entries of other models afterwards")
    add_actor_flag(reembed)
    add_settings(reembed, *_ENROLLING_SETTINGS)
    reembed.set_defaults(handler=reembed_entries)
    serve = gsub.add_parser(
        "serve-lite",
        help="run `milvus-lite server` on a data directory, rebuilding index files a killed server "
        "left half-written (the chart's gallery pod)",
        description="Load every collection in the data directory once; one that fails to load from "
        "its index files gets them rebuilt. Then serve Milvus' gRPC protocol on it until stopped.",
    )
    serve.add_argument("--data-dir", required=True, type=Path, help="the server's data directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port_arg, default=19530, help="port to listen on (default 19530)")
    serve.add_argument(
        "--health-port",
        type=port_arg,
        help="also serve /healthz, /readyz and /metrics on this port, from before the index check "
        "(the chart's probes); default: none",
    )
    serve.set_defaults(handler=serve_lite)


def _add_enrolling_flags(parser: argparse.ArgumentParser) -> None:
    """What `enroll` and `enroll-bulk` both take: the authorisation, the actor, and the settings of
    the gallery, the state, the photo key, the models and the audit log's signing."""
    from facestream.accountability.roles import add_actor_flag

    parser.add_argument(
        "--authorisation",
        default=None,
        metavar="ID",
        help="id of the authorisation the entries exist under (facestream authorisation grant)",
    )
    add_actor_flag(parser)
    add_settings(parser, *_ENROLLING_SETTINGS)


def port_arg(value: str) -> int:
    """A TCP port, 1-65535: anything else is a usage error before the data directory is opened."""
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port (1-65535)")
    return int(value)


def serve_lite(args: argparse.Namespace) -> int:
    from facestream.gallery.lite_server import serve

    serve(args.data_dir, args.host, args.port, args.health_port)
    return 0


def _enrolling_rights(args: argparse.Namespace) -> tuple[Path, Actor, Authorisation]:
    """The state directory, the officer and the authorisation (in force): what an enrollment needs
    before the photo key and any model, in that order (and a dry run alike)."""
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.session import state_dir_from

    if not args.authorisation:
        raise ConfigError(
            "enrollment needs --authorisation ID: an authorisation in force "
            "(see `facestream authorisation list --active`, or `authorisation grant`)"
        )
    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "officer", args.actor)
    auth = AuthorisationStore(state_dir).usable(args.authorisation)
    return state_dir, actor, auth


@contextlib.contextmanager
def _enrolling(args: argparse.Namespace) -> Iterator[AuditedEnroller]:
    """The officer, the authorisation (in force), the models and the gallery, for `enroll` and
    `enroll-bulk`; every usage error comes before a model or the gallery is opened."""
    from facestream.accountability.enrolling import AuditedEnroller
    from facestream.accountability.photos import PhotoVault, load_photo_key
    from facestream.accountability.roles import RoleStore
    from facestream.accountability.session import audit_for, open_gallery
    from facestream.gallery.enroll import Enroller
    from facestream.vision.factory import build_embedder, build_finder

    state_dir, actor, auth = _enrolling_rights(args)
    key = load_photo_key(
        settings_from(args, PhotoSettings), state_dir, single_operator=RoleStore(state_dir).single_operator()
    )
    gallery_s = settings_from(args, GallerySettings)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    model_s = settings_from(args, ModelSettings)
    embedder = build_embedder(settings_from(args, EmbedderSettings), model_s)
    finder = build_finder(settings_from(args, DetectorSettings), model_s)
    gallery = open_gallery(gallery_s, state_dir, audit, dim=embedder.dim)
    try:
        enroller = Enroller(finder, embedder, gallery, gallery_s)
        yield AuditedEnroller(state_dir, actor, auth.id, enroller, gallery, audit, PhotoVault(state_dir, key))
    finally:
        gallery.close()


def _enrolled_json(result: Enrollment, auth: Authorisation) -> dict[str, Any]:
    return {
        "identity": result.identity,
        "authorisation_id": auth.id,
        "valid_until_ms": auth.valid_until_ms,
        "entries": [
            {"photo": p.photo, "entry_id": p.entry_id, "det_score": p.det_score, "size_px": p.size_px}
            for p in result.photos
        ],
    }


def enroll_photos(args: argparse.Namespace) -> int:
    with _enrolling(args) as enrolling:
        result, auth = enrolling.enroll(args.identity, list(args.photos))
    emit(_enrolled_json(result, auth))
    return 0


def enroll_folder(args: argparse.Namespace) -> int:
    """Every identity of the folder (or the manifest), one after the other: one refused does not
    stop the rest, and each is in the gallery and the audit log before the next begins, so a run
    that stopped can be run again (an identity's entries are the same each time). Exit 1 if any was
    refused."""
    from facestream.gallery.enroll_folder import identities_in
    from facestream.gallery.enroll_manifest import identities_listed

    people = identities_listed(args.manifest) if args.manifest is not None else identities_in(args.folder)
    if args.dry_run:
        return _check_folder(args, people)
    with _enrolling(args) as enrolling:

        def enroll(person: BulkIdentity) -> tuple[dict[str, Any], int]:
            result, auth = enrolling.enroll(person.identity, list(person.photos))
            return _enrolled_json(result, auth), len(result.photos)

        refused = _each_identity(people, enroll, "enroll-bulk", done_as="enrolled")
    return 1 if refused else 0


def _check_folder(args: argparse.Namespace, people: list[BulkIdentity]) -> int:
    """`enroll-bulk --dry-run`: each identity as enrolling would check it, with the detector only
    (no embedder, no gallery, no photo vault, no audit log opened); nothing is written, and the
    output is the real run's with `would_enroll` for `entries`. Exit 1 if any would be refused."""
    from facestream.accountability.photos import check_photo_key
    from facestream.accountability.roles import RoleStore
    from facestream.gallery.enroll import FaceChecker, read_photos
    from facestream.vision.factory import build_finder

    state_dir, _, _ = _enrolling_rights(args)
    check_photo_key(  # as load_photo_key would, without making a development key
        settings_from(args, PhotoSettings), state_dir, single_operator=RoleStore(state_dir).single_operator()
    )
    checker = FaceChecker(
        build_finder(settings_from(args, DetectorSettings), settings_from(args, ModelSettings)),
        settings_from(args, GallerySettings),
    )

    def check(person: BulkIdentity) -> tuple[dict[str, Any], int]:
        faces = checker.faces(read_photos(list(person.photos)))
        photos = [
            {"photo": str(photo), "det_score": f.quality.det_score, "size_px": f.quality.size_px}
            for photo, f in zip(person.photos, faces, strict=True)
        ]
        return {"identity": person.identity, "would_enroll": photos}, len(photos)

    refused = _each_identity(people, check, "enroll-bulk --dry-run", done_as="would_enroll", dry_run=True)
    return 1 if refused else 0


def _each_identity(
    people: list[BulkIdentity],
    attempt: Callable[[BulkIdentity], tuple[dict[str, Any], int]],
    label: str,
    *,
    done_as: str,
    dry_run: bool = False,
) -> int:
    """`attempt` each identity in turn (its JSON line and photo count, or EnrollmentRefused), one
    refused not stopping the rest; emits a line per identity, logs progress, and ends with the
    summary (`done_as`: the count of those not refused). Returns how many were refused.

    Anything else that fails (the authorisation revoked or expired mid-run, the audit log down) stops
    the run: the summary still comes, with `stopped` (why) and `not_attempted`, and the error goes
    on to the command's one line. What was enrolled stays; the same folder again goes on from there."""
    refused = done = 0

    def summary(**stop: object) -> None:
        counts = {"identities": len(people), done_as: done, "refused": refused}
        emit({"summary": {**counts, **stop, **({"dry_run": True} if dry_run else {})}})

    for n, person in enumerate(people, 1):
        if person.why_not is None:
            try:
                line, photos = attempt(person)
            except EnrollmentRefused as exc:
                person = person.refused(str(exc))
            except FacestreamError as exc:
                summary(stopped=str(exc), not_attempted=len(people) - n + 1)
                raise
            else:
                done += 1
                emit(line)
                log.info("%s %d/%d %s: %d photo(s)", label, n, len(people), person.identity, photos)
                continue
        refused += 1
        emit({"identity": person.identity, "refused": person.why_not})
        log.warning("%s %d/%d %s: refused: %s", label, n, len(people), person.identity, person.why_not)
    summary()
    return refused


def list_entries(args: argparse.Namespace) -> int:
    from facestream.accountability.roles import resolve_actor_any
    from facestream.accountability.session import audit_for, open_gallery, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor_any(state_dir, ("officer", "auditor"), args.actor)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    gallery = open_gallery(settings_from(args, GallerySettings), state_dir, audit)
    try:
        entries = gallery.entries()
    finally:
        gallery.close()
    audit.append(actor=actor, action="gallery.list", objects={"entries": len(entries)})
    for entry in entries:
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
    return 0


def remove_identity(args: argparse.Namespace) -> int:
    from facestream.accountability.erasures import ErasureRecord, RecordedErasures
    from facestream.accountability.purge import erase_photos_of
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.session import audit_for, open_gallery, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "officer", args.actor)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    gallery = open_gallery(settings_from(args, GallerySettings), state_dir, audit)
    try:
        enrolled = gallery.entries_of(args.identity)
        if not enrolled:
            raise ConfigError(f"identity {args.identity!r} is not enrolled")
        records = []
        for auth_id in sorted({e.authorisation_id for e in enrolled}):
            ids = [e.entry_id for e in enrolled if e.authorisation_id == auth_id]
            objects = {"identity": args.identity, "entries": ids}
            records.append(ErasureRecord("gallery.remove", tuple(ids), auth_id or None, objects))
        removed = RecordedErasures(state_dir, audit).erase(gallery, actor, records)
        photos = erase_photos_of(state_dir, removed, gallery)
    finally:
        gallery.close()
    emit({"identity": args.identity, "removed_entries": len(removed), "removed_photos": photos})
    return 0


def reembed_entries(args: argparse.Namespace) -> int:
    from facestream.accountability.reembed import reembed
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.session import audit_for, open_gallery, state_dir_from
    from facestream.vision.factory import build_embedder, build_finder

    gallery_s = settings_from(args, GallerySettings)
    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "officer", args.actor)
    model_s = settings_from(args, ModelSettings)
    embedder = build_embedder(settings_from(args, EmbedderSettings), model_s)
    finder = build_finder(settings_from(args, DetectorSettings), model_s)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    gallery = open_gallery(gallery_s, state_dir, audit, dim=embedder.dim)
    try:
        summary = reembed(
            state_dir,
            gallery,
            finder,
            embedder,
            gallery_s,
            photo_settings=settings_from(args, PhotoSettings),
            audit=audit,
            actor=actor,
            drop_old=args.drop_old,
        )
    finally:
        gallery.close()
    emit(summary)
    return 0
