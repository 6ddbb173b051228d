"""Who may do what: five roles, assigned per gallery in `roles.json`, checked by every command.

Bootstrap: while no role has been assigned, the gallery runs in *single-operator mode* —
the local user holds every role, and every audit record says so (the role is written as
`officer:single-operator`, ...), so a log from such a deployment can never be mistaken for
one with separated duties. The first assignment must name an operator (someone must be
able to manage roles afterwards); from then on separation is enforced:

- only an operator changes roles, and never their own;
- no one holds both `authoriser` and `officer`: who authorises a watchlist does not fill it;
- the last operator cannot be removed.

The actor's name comes from `--actor`, else FACESTREAM_ACTOR, else the OS login name. On
the command line that is an assertion, as strong as the OS account that runs it: in
embedded mode the gallery directory's file permissions are the boundary (docs/accountability.md).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from facestream.accountability.audit import Actor
from facestream.accountability.jsonstore import locked, read_document, write_document
from facestream.errors import ConfigError, PermissionDenied

log = logging.getLogger(__name__)

Role = Literal["authoriser", "officer", "reviewer", "auditor", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
SINGLE_OPERATOR = "single-operator"
CONFLICTS: tuple[frozenset[str], ...] = (frozenset({"authoriser", "officer"}),)
ACTOR_ENV = "FACESTREAM_ACTOR"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")


def actor_name(name: str | None = None) -> str:
    """--actor, else FACESTREAM_ACTOR, else the OS login name; checked to be a plain account name."""
    who = name or os.environ.get(ACTOR_ENV) or getpass.getuser()
    if not _NAME.match(who):
        raise ConfigError(f"actor {who!r} must be 1-64 letters, digits, or . _ @ - (an account name)")
    return who


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


class RoleStore:
    """roles.json: {"assignments": {name: [role, ...]}}."""

    FILE = "roles.json"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.FILE

    def assignments(self) -> dict[str, frozenset[Role]]:
        raw = read_document(self.path).get("assignments", {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path} is damaged (assignments must be an object)")
        try:
            return {
                str(name): frozenset(check_role(r) for r in roles) for name, roles in raw.items() if roles
            }
        except TypeError:  # found by tests/fuzz: {"name": true} is not a list of roles
            raise ConfigError(f"{self.path} is damaged (an account's roles must be a list)") from None

    def single_operator(self) -> bool:
        return not self.assignments()

    def grant(self, by: str, name: str, role: Role) -> None:
        actor_name(name)
        with locked(self.path):
            current = self.assignments()
            if not current and role != "operator":
                raise ConfigError(
                    "the first role assigned must be an operator (someone must be able to manage roles); "
                    "run: facestream roles grant --role operator NAME"
                )
            if current and name == by:
                raise PermissionDenied(f"{by} cannot change their own roles; another operator must")
            held = current.get(name, frozenset())
            if role in held:
                raise ConfigError(f"{name} already holds the role {role}")
            for pair in CONFLICTS:
                if role in pair and held & pair:
                    other = next(iter(pair - {role}))
                    raise PermissionDenied(
                        f"{name} holds {other}; {role} and {other} are kept apart "
                        "(who authorises a watchlist must not fill it)"
                    )
            current[name] = held | {role}
            self._write(current)

    def revoke(self, by: str, name: str, role: Role) -> None:
        with locked(self.path):
            current = self.assignments()
            held = current.get(name, frozenset())
            if role not in held:
                raise ConfigError(f"{name} does not hold the role {role}")
            if name == by:
                raise PermissionDenied(f"{by} cannot change their own roles; another operator must")
            operators = [n for n, roles in current.items() if "operator" in roles]
            if role == "operator" and operators == [name]:
                raise PermissionDenied(f"{name} is the last operator; grant another operator first")
            current[name] = held - {role}
            self._write(current)

    def _write(self, assignments: dict[str, frozenset[Role]]) -> None:
        doc = {"assignments": {n: sorted(r) for n, r in sorted(assignments.items()) if r}}
        write_document(self.path, doc)


def resolve_actor(gallery_dir: Path, role: Role, name: str | None = None) -> Actor:
    """The actor for an action needing `role`, or PermissionDenied when they do not hold it."""
    return resolve_actor_any(gallery_dir, (role,), name)


def resolve_actor_any(gallery_dir: Path, roles: Sequence[Role], name: str | None = None) -> Actor:
    """The actor acting in the first of `roles` they hold."""
    who = actor_name(name)
    store = RoleStore(gallery_dir)
    assignments = store.assignments()
    if not assignments:
        log.warning(
            "single-operator mode: no roles assigned in %s, so %s acts in every role (recorded as such); "
            "assign roles with `facestream roles grant`",
            gallery_dir,
            who,
        )
        return Actor(who, f"{roles[0]}:{SINGLE_OPERATOR}")
    held = assignments.get(who, frozenset())
    for role in roles:
        if role in held:
            return Actor(who, role)
    needed = " or ".join(roles)
    raise PermissionDenied(f"{who} does not hold the role {needed} (see `facestream roles list`)")


def add_actor_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        default=None,
        metavar="NAME",
        help=f"who is acting (default: env {ACTOR_ENV}, else the OS login name); checked against roles.json",
    )
