"""`facestream roles`: assign and withdraw roles in a gallery (role operator; audited as roles.change).

While no role is assigned the gallery is in single-operator mode (accountability/roles.py);
the first `roles grant` must name an operator, and from then on duties are separated.
"""

from __future__ import annotations

import argparse
from typing import Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import OneLineParser, Only, add_settings, settings_from
from facestream.commands.output import emit
from facestream.settings import GallerySettings


def register(sub: Any) -> None:
    from facestream.accountability.roles import ROLES, add_actor_flag

    p = sub.add_parser("roles", help="assign, withdraw and list roles (role operator)")
    rsub = p.add_subparsers(
        dest="roles_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    for name, handler, text in (
        ("grant", grant_role, "give NAME a role"),
        ("revoke", revoke_role, "take a role from NAME"),
    ):
        cmd = rsub.add_parser(name, help=text)
        cmd.add_argument("--role", required=True, choices=ROLES, help="the role")
        cmd.add_argument("member", metavar="NAME", help="account name of the person")
        add_actor_flag(cmd)
        # of the gallery's settings only its state dir; of the audit log's, what signs its record
        add_settings(cmd, Only(GallerySettings, "gallery"), AccountabilitySettings, AUDIT_SIGNING)
        cmd.set_defaults(handler=handler)
    listing = rsub.add_parser("list", help="list role assignments as JSON (and the mode); any role")
    add_actor_flag(listing)
    add_settings(listing, Only(GallerySettings, "gallery"), AccountabilitySettings)
    listing.set_defaults(handler=list_roles)


def _change(args: argparse.Namespace, op: str) -> int:
    from facestream.accountability.roles import RoleStore, resolve_actor
    from facestream.accountability.session import audit_for, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "operator", args.actor)
    store = RoleStore(state_dir)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    if op == "grant":
        store.grant(actor.name, args.member, args.role)
    else:
        store.revoke(actor.name, args.member, args.role)
    audit.append(
        actor=actor, action="roles.change", objects={"op": op, "member": args.member, "role": args.role}
    )
    held = store.assignments().get(args.member, frozenset())
    emit({"member": args.member, "roles": sorted(held), "single_operator": store.single_operator()})
    return 0


def grant_role(args: argparse.Namespace) -> int:
    return _change(args, "grant")


def revoke_role(args: argparse.Namespace) -> int:
    return _change(args, "revoke")


def list_roles(args: argparse.Namespace) -> int:
    from facestream.accountability.roles import ROLES, RoleStore, resolve_actor_any
    from facestream.accountability.session import state_dir_from

    state_dir = state_dir_from(args)
    resolve_actor_any(state_dir, ROLES, args.actor)
    store = RoleStore(state_dir)
    assignments = store.assignments()
    emit(
        {
            "single_operator": not assignments,
            "assignments": {name: sorted(roles) for name, roles in sorted(assignments.items())},
        }
    )
    return 0
