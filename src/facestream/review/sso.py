"""Single sign-on for the review web app: the person a trusted sign-in proxy (oauth2-proxy) names.

The proxy runs the OpenID Connect flow with the organisation's identity provider and passes who
signed in, and their groups, in request headers. This module only reads them; web.py decides
whether to believe them (only from --review-trusted-proxies: anyone else could write the same
headers). A person is let in when one of their groups is a reviewers' group; their name is the
header's value, lower-cased (mail addresses are case-insensitive, and one person must never be
two reviewers, nor two people one), and must be an account name as roles.json accepts them, since
it is the actor written to the audit log and checked for the reviewer role on every decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from facestream.accountability.roles import actor_name
from facestream.errors import ConfigError
from facestream.review.settings import ReviewSettings, sso_groups


@dataclass(frozen=True, slots=True)
class SsoPerson:
    """Who the proxy says signed in, let in as a reviewer."""

    name: str
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class SsoRefusal:
    """Who the proxy says signed in, not let in, and why (shown to them and logged)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class SsoConfig:
    """Which headers carry the person and their groups, and which groups may review."""

    user_header: str
    groups_header: str
    reviewer_groups: frozenset[str]
    logout_url: str = "/oauth2/sign_out"

    @classmethod
    def from_settings(cls, review: ReviewSettings) -> SsoConfig | None:
        """None when SSO is off (no user header configured)."""
        if not review.review_sso_user_header:
            return None
        return cls(
            user_header=review.review_sso_user_header,
            groups_header=review.review_sso_groups_header,
            reviewer_groups=sso_groups(review.review_sso_reviewer_groups),
            logout_url=review.review_sso_logout_url,
        )

    def person(self, user: str | None, groups_values: Iterable[str]) -> SsoPerson | SsoRefusal | None:
        """The person the user header names, with the groups of every groups header line (proxies send
        one comma-separated line or one line per group); call only for a request from a trusted proxy.
        None when the user header is absent or empty (nobody signed in through the proxy)."""
        raw = (user or "").strip()
        if not raw:
            return None
        name = raw.lower()
        try:
            actor_name(name)
        except ConfigError:
            why = "the name the sign-in proxy sent is not an account name (1-64 letters, digits, . _ @ -)"
            return SsoRefusal(raw[:64], why)
        groups = sso_groups(",".join(groups_values))
        if not groups & self.reviewer_groups:
            return SsoRefusal(name, "you are signed in, but none of your groups may use the review app")
        return SsoPerson(name, groups)
