"""`facestream rules`: suspension rules that switch matching off in zones/cameras for a time window.

Adding a suspension narrows what can be matched, so an operator or an authoriser may do it;
removing one widens it again, so only an authoriser may. Both are audited as rules.change.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from facestream.accountability.audit_keys import AUDIT_SIGNING, AuditSettings
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import OneLineParser, Only, add_settings, settings_from
from facestream.commands.output import emit
from facestream.settings import GallerySettings

if TYPE_CHECKING:
    from facestream.accountability.rules import SuspensionRule


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(sub: Any) -> None:
    from facestream.accountability.roles import add_actor_flag

    p = sub.add_parser("rules", help="suspension rules: where and when matching is off")
    rsub = p.add_subparsers(
        dest="rules_command", required=True, parser_class=OneLineParser, metavar="COMMAND"
    )
    add = rsub.add_parser(
        "add",
        help="switch matching off in zones/cameras for a time window; prints the rule as JSON",
        description="Switch matching off for the given zones and/or cameras (neither: every camera) "
        "from --from (default now) until --until.",
    )
    add.add_argument("--zones", type=_csv, default=[], metavar="Z1,Z2", help="camera zones")
    add.add_argument("--cameras", type=_csv, default=[], metavar="A,B", help="cameras")
    add.add_argument("--from", dest="starts", default=None, metavar="ISO8601", help="start (default: now)")
    add.add_argument("--until", dest="ends", required=True, metavar="ISO8601", help="end")
    add.add_argument("--reason", required=True, metavar="TEXT", help="why, e.g. 'demonstration, Main Sq.'")
    add_actor_flag(add)
    add_settings(add, Only(GallerySettings, "gallery"), AccountabilitySettings, AUDIT_SIGNING)
    add.set_defaults(handler=add_rule)
    remove = rsub.add_parser("remove", help="remove a suspension rule (role authoriser)")
    remove.add_argument("id", metavar="ID", help="rule id")
    add_actor_flag(remove)
    add_settings(remove, Only(GallerySettings, "gallery"), AccountabilitySettings, AUDIT_SIGNING)
    remove.set_defaults(handler=remove_rule)
    listing = rsub.add_parser("list", help="list suspension rules, one JSON object each")
    listing.add_argument("--current", action="store_true", help="only rules in effect now")
    add_actor_flag(listing)
    add_settings(listing, Only(GallerySettings, "gallery"), AccountabilitySettings)
    listing.set_defaults(handler=list_rules)


def add_rule(args: argparse.Namespace) -> int:
    from facestream.accountability.clock import now_ms, parse_instant
    from facestream.accountability.roles import resolve_actor_any
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.session import audit_for, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor_any(state_dir, ("operator", "authoriser"), args.actor)
    at = now_ms()
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    rule = RuleStore(state_dir).add(
        zones=args.zones,
        cameras=args.cameras,
        starts_at_ms=parse_instant(args.starts, "--from") if args.starts else at,
        ends_at_ms=parse_instant(args.ends, "--until"),
        reason=args.reason,
        created_by=actor.name,
        at_ms=at,
    )
    audit.append(actor=actor, action="rules.change", objects=_audited(rule, "add"))
    emit(rule.public())
    return 0


def remove_rule(args: argparse.Namespace) -> int:
    from facestream.accountability.roles import resolve_actor
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.session import audit_for, state_dir_from

    state_dir = state_dir_from(args)
    actor = resolve_actor(state_dir, "authoriser", args.actor)
    audit = audit_for(state_dir, settings_from(args, AuditSettings))
    rule = RuleStore(state_dir).remove(args.id)
    audit.append(actor=actor, action="rules.change", objects=_audited(rule, "remove"))
    emit({**rule.public(), "removed": True})
    return 0


def list_rules(args: argparse.Namespace) -> int:
    from facestream.accountability.clock import now_ms
    from facestream.accountability.roles import ROLES, resolve_actor_any
    from facestream.accountability.rules import RuleStore
    from facestream.accountability.session import state_dir_from

    state_dir = state_dir_from(args)
    resolve_actor_any(state_dir, ROLES, args.actor)
    at = now_ms()
    for rule in RuleStore(state_dir).all():
        if args.current and not rule.starts_at_ms <= at < rule.ends_at_ms:
            continue
        emit(rule.public())
    return 0


def _audited(rule: SuspensionRule, op: str) -> dict[str, Any]:
    return {
        "op": op,
        "rule_id": rule.id,
        "zones": list(rule.zones),
        "cameras": list(rule.cameras),
        "starts_at_ms": rule.starts_at_ms,
        "ends_at_ms": rule.ends_at_ms,
        "reason": rule.reason,
    }
