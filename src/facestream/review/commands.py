"""`facestream review add-reviewer | set-password | remove-reviewer | list-reviewers` (role operator).

An account lets a person sign in to the review web app; deciding needs the reviewer role as
well (`facestream roles grant --role reviewer NAME`). Passwords are read from stdin with
`--password-stdin` (one line), else asked for on the terminal; never taken as a flag, which
would leave them in shell history and process lists. Every change is audited as
`config.change` (setting `review.accounts`), without the password.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable
from typing import Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import OneLineParser, add_settings, settings_from
from facestream.commands.output import emit
from facestream.errors import ConfigError
from facestream.settings import GallerySettings

log = logging.getLogger(__name__)
Handler = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add the account subcommands to `facestream review`'s subparsers."""
    from facestream.accountability.roles import add_actor_flag

    def command(
        name: str, handler: Handler, text: str, *, member: bool = True, password: bool = False
    ) -> None:
        """`member`: a change to NAME's account, audited (so it takes the audit log's signing flags)."""
        p: OneLineParser = sub.add_parser(name, help=text, description=text)
        if member:
            p.add_argument("member", metavar="NAME", help="account name of the reviewer")
        if password:
            p.add_argument(
                "--password-stdin", action="store_true", help="read the password from the first line of stdin"
            )
        add_actor_flag(p)
        add_settings(p, GallerySettings, AccountabilitySettings)
        if member:
            add_settings(p, AUDIT_SIGNING)
        p.set_defaults(review_handler=handler)

    command("add-reviewer", add_reviewer, "create a reviewer account (role operator)", password=True)
    command(
        "set-password", set_password, "change a reviewer account's password (role operator)", password=True
    )
    command("remove-reviewer", remove_reviewer, "delete a reviewer account (role operator)")
    command(
        "list-reviewers", list_reviewers, "list reviewer accounts (role operator or auditor)", member=False
    )


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password on: pass --password-stdin and pipe it in")
    first = getpass.getpass(f"password for {args.member}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def _change(args: argparse.Namespace, op: str) -> int:
    from facestream.accountability.roles import RoleStore, resolve_actor
    from facestream.accountability.session import audit_for, state_dir_from
    from facestream.review.accounts import ReviewerAccounts

    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "operator", args.actor)
    accounts = ReviewerAccounts(state_dir)
    if op == "remove":
        accounts.remove(args.member)
    else:
        accounts.add(args.member, read_password(args), by=actor.name, replace=op == "set-password")
    audit_for(state_dir, settings_from(args, AuditSettings)).append(
        actor=actor,
        action="config.change",
        objects={"setting": "review.accounts", "op": op, "account": args.member},
    )
    roles = RoleStore(state_dir)
    single = roles.single_operator()
    reviewer = single or "reviewer" in roles.assignments().get(args.member, frozenset())
    if op != "remove" and not reviewer:
        log.warning(
            "%s can sign in but not decide until an operator runs: facestream roles grant --role reviewer %s",
            args.member,
            args.member,
        )
    emit({"account": args.member, "op": op, "reviewer_role": reviewer, "single_operator": single})
    return 0


def add_reviewer(args: argparse.Namespace) -> int:
    return _change(args, "add")


def set_password(args: argparse.Namespace) -> int:
    return _change(args, "set-password")


def remove_reviewer(args: argparse.Namespace) -> int:
    return _change(args, "remove")


def list_reviewers(args: argparse.Namespace) -> int:
    from facestream.accountability.clock import iso
    from facestream.accountability.roles import RoleStore, resolve_actor_any
    from facestream.accountability.session import state_dir_from
    from facestream.review.accounts import ReviewerAccounts

    state_dir = state_dir_from(args)
    resolve_actor_any(state_dir, ("operator", "auditor"), args.actor)
    assignments = RoleStore(state_dir).assignments()
    for account in sorted(ReviewerAccounts(state_dir).all().values(), key=lambda a: a.name):
        emit(
            {
                "account": account.name,
                "created_at": iso(account.created_at_ms),
                "created_by": account.created_by,
                "roles": sorted(assignments.get(account.name, frozenset())),
            }
        )
    return 0
