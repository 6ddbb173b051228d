"""`facestream authorisation`: grant, revoke and list the authorisations watchlists exist under.

Granting and revoking need the `authoriser` role; listing `authoriser`, `officer` or `auditor`.
"""

from __future__ import annotations

import argparse
from typing import Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import OneLineParser, Only, add_settings, settings_from
from facestream.commands.output import emit
from facestream.settings import GallerySettings


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: Any) -> None:
    from facestream.accountability.authorisations import PURPOSES
    from facestream.accountability.roles import add_actor_flag

    p = sub.add_parser("authorisation", help="grant, revoke and list authorisations (role authoriser)")
    asub = p.add_subparsers(
        dest="authorisation_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )

    grant = asub.add_parser(
        "grant",
        help="grant an authorisation; prints it as JSON (with its id)",
        description="Grant an authorisation: watchlist entries can only be enrolled under one, and "
        "match only while it is in force, on the cameras/zones it names (none: every camera).",
    )
    grant.add_argument("--case", required=True, metavar="REF", help="case reference")
    grant.add_argument("--basis", required=True, metavar="TEXT", help="legal basis (statute, order)")
    grant.add_argument("--purpose", required=True, choices=PURPOSES, help="what the search is for")
    grant.add_argument("--issued-by", required=True, metavar="NAME", help="issuing authority")
    grant.add_argument(
        "--valid-until", required=True, metavar="ISO8601", help="end of validity (UTC if no offset)"
    )
    grant.add_argument(
        "--valid-from", default=None, metavar="ISO8601", help="start of validity (default: now)"
    )
    grant.add_argument("--cameras", type=_csv, default=[], metavar="A,B", help="cameras it covers")
    grant.add_argument("--zones", type=_csv, default=[], metavar="Z1,Z2", help="camera zones it covers")
    add_actor_flag(grant)
    # of the gallery's settings only its state dir; of the audit log's, what signs its record
    add_settings(grant, Only(GallerySettings, "gallery"), AccountabilitySettings, AUDIT_SIGNING)
    grant.set_defaults(handler=grant_authorisation)

    revoke = asub.add_parser(
        "revoke",
        help="revoke an authorisation: its entries stop matching now and their data is erased",
    )
    revoke.add_argument("id", metavar="ID", help="authorisation id")
    add_actor_flag(revoke)
    add_settings(revoke, GallerySettings, AccountabilitySettings, AUDIT_SIGNING)
    revoke.set_defaults(handler=revoke_authorisation)

    listing = asub.add_parser("list", help="list authorisations, one JSON object each")
    listing.add_argument("--active", action="store_true", help="only those in force now")
    add_actor_flag(listing)
    add_settings(listing, Only(GallerySettings, "gallery"), AccountabilitySettings)
    listing.set_defaults(handler=list_authorisations)


def grant_authorisation(args: argparse.Namespace) -> int:
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.clock import now_ms, parse_instant
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.session import audit_for, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "authoriser", args.actor)
    until = parse_instant(args.valid_until, "--valid-until")
    start = parse_instant(args.valid_from, "--valid-from") if args.valid_from else None
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    store = AuthorisationStore(state_dir)
    auth = store.grant(
        case_ref=args.case,
        legal_basis=args.basis,
        purpose=args.purpose,
        issued_by=args.issued_by,
        valid_from_ms=start,
        valid_until_ms=until,
        cameras=args.cameras,
        zones=args.zones,
        granted_by=actor.name,
        at_ms=now_ms(),
    )
    audit.append(
        actor=actor,
        action="authorisation.grant",
        authorisation_id=auth.id,
        objects={
            "case_ref": auth.case_ref,
            "legal_basis": auth.legal_basis,
            "purpose": auth.purpose,
            "issued_by": auth.issued_by,
            "valid_from_ms": auth.valid_from_ms,
            "valid_until_ms": auth.valid_until_ms,
            "cameras": list(auth.cameras),
            "zones": list(auth.zones),
        },
    )
    emit(auth.public())
    return 0


def revoke_authorisation(args: argparse.Namespace) -> int:
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.purge import Purger
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.session import audit_for, gallery_exists, state_dir_from
    from facestream.errors import GalleryLocked, GalleryUnavailable
    from facestream.gallery.store import Gallery

    gallery_s = settings_from(args, GallerySettings)
    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "authoriser", args.actor)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    auth = AuthorisationStore(state_dir).revoke(args.id, actor.name)
    audit.append(actor=actor, action="authorisation.revoke", authorisation_id=auth.id)
    purge_note = "erased"
    if gallery_exists(gallery_s):
        try:
            gallery: Gallery | None = Gallery(gallery_s)
        except (GalleryLocked, GalleryUnavailable) as exc:
            gallery = None
            purge_note = f"photos erased; vectors are erased by the gallery's owner at its next sweep ({exc})"
    else:
        gallery = None
    try:
        purger = Purger(state_dir, audit, gallery)
        complete = purger.purge(auth, actor)
        if gallery is None and purge_note == "erased":
            # No gallery was ever written: there are no vectors to erase.
            purger.store.update(auth.id, purged_at_ms=auth.revoked_at_ms)
            complete = True
    finally:
        if gallery is not None:
            gallery.close()
    emit({**purger.store.get(auth.id).public(), "purged": complete, "purge": purge_note})
    return 0


def list_authorisations(args: argparse.Namespace) -> int:
    from facestream.accountability.authorisations import AuthorisationStore
    from facestream.accountability.clock import now_ms
    from facestream.accountability.roles import resolve_actor_any
    from facestream.accountability.session import state_dir_from

    state_dir = state_dir_from(args)
    resolve_actor_any(state_dir, ("authoriser", "officer", "auditor"), args.actor)
    at = now_ms()
    for auth in sorted(AuthorisationStore(state_dir).all().values(), key=lambda a: (a.granted_at_ms, a.id)):
        if args.active and not auth.in_force_at(at):
            continue
        emit(auth.public())
    return 0
