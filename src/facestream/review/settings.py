"""Settings of the review service: the review window, the web app, faust's app id and data dir.

Same conventions as facestream.settings (frozen; every field a flag and an env var); field
names start with `review_` because each becomes a flag of the same name.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from facestream.env_names import EnvNamedSettings
from facestream.transport.topics import DAY_MS

_CONFIG = SettingsConfigDict(env_prefix="FACESTREAM_", frozen=True, extra="forbid", protected_namespaces=())


class ReviewSettings(EnvNamedSettings):
    """Two-person review: how long candidates wait, how many must confirm, the web app."""

    model_config = _CONFIG

    review_window_s: float = Field(
        DAY_MS / 1000,
        gt=0,
        le=30 * 86_400,
        description="a candidate not decided this long after it entered review expires, and its face "
        "crop is purged (keep it at most the retention of `matches`)",
    )
    review_confirmations: int = Field(
        2, ge=2, le=5, description="different reviewers who must confirm before an alert (at least two)"
    )
    review_keep_closed_s: float = Field(
        3600.0,
        ge=0,
        le=7 * 86_400,
        description="a decided candidate's record (ids, no image) is kept this long, to refuse late "
        "decisions and list it as recently decided, then deleted",
    )
    review_sweep_interval_s: float = Field(
        5.0, gt=0, le=300, description="how often expiry is enforced and the pending gauges are updated"
    )
    review_host: str = Field("0.0.0.0", description="address the reviewers' web app listens on")
    review_port: int = Field(8080, ge=0, le=65_535, description="port of the reviewers' web app (0: any)")
    review_cookie_secure: bool = Field(
        True,
        description="mark the session cookie Secure (HTTPS only; browsers also accept it on "
        "http://localhost); turn off only behind a TLS-terminating proxy that rewrites cookies",
    )
    review_signin_window_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="sign-in attempts are counted over this sliding window; an allowance comes back as "
        "attempts age out of it (no lock)",
    )
    review_signin_per_account_client: int = Field(
        5, ge=1, le=1000, description="wrong passwords one client may try on one account per window"
    )
    review_signin_per_client: int = Field(
        20,
        ge=1,
        le=10_000,
        description="wrong passwords one client may try per window, all account names together",
    )
    review_signin_per_account: int = Field(
        50,
        ge=1,
        le=100_000,
        description="wrong passwords on one account from all clients per window, beyond which each "
        "client gets one try on it per window (slows a distributed guesser, never locks the reviewer out)",
    )
    review_trusted_proxies: str = Field(
        "",
        max_length=4096,
        description="comma-separated addresses or networks (CIDR) of the reverse proxies in front of "
        "the web app: only from these are X-Forwarded-For and X-Forwarded-Proto believed; empty: the "
        "client is the connection's address and the headers are ignored",
    )
    review_sso_user_header: str = Field(
        "",
        max_length=100,
        pattern=r"^[A-Za-z0-9-]*$",
        description="single sign-on through a trusted proxy (oauth2-proxy): the request header that names "
        "the signed-in person (e.g. X-Auth-Request-Email behind the nginx Ingress, X-Forwarded-Email with "
        "oauth2-proxy as the reverse proxy), believed only from --review-trusted-proxies; empty: SSO off. "
        "When on, password sign-in is off",
    )
    review_sso_groups_header: str = Field(
        "X-Auth-Request-Groups",
        max_length=100,
        pattern=r"^[A-Za-z0-9-]*$",
        description="with SSO: the request header listing the person's groups, comma-separated",
    )
    review_sso_reviewer_groups: str = Field(
        "",
        max_length=4096,
        description="with SSO: comma-separated groups whose members may use the review app; a person in "
        "none of them is refused (deciding still needs the reviewer role in roles.json, checked on "
        "every decision)",
    )
    review_sso_logout_url: str = Field(
        "/oauth2/sign_out",
        max_length=2000,
        pattern=r"^(/|https://)[^\s]*$",
        description="with SSO: where signing out sends the browser (the proxy's sign-out, which ends its "
        "session too)",
    )
    review_behind_tls: bool = Field(
        False,
        description="browsers reach the web app over HTTPS through a TLS-terminating proxy: send "
        "Strict-Transport-Security (sent anyway on a request that arrived over TLS, or that a "
        "trusted proxy marks X-Forwarded-Proto: https)",
    )
    review_hsts_max_age_s: int = Field(
        31_536_000,
        ge=0,
        le=63_072_000,
        description="max-age of Strict-Transport-Security when it is sent (0: never send it)",
    )
    review_session_idle_s: float = Field(
        1800.0, gt=0, le=86_400, description="a reviewer session idle this long is signed out"
    )
    review_session_max_s: float = Field(
        12 * 3600.0, gt=0, le=7 * 86_400, description="a reviewer session ends this long after sign-in"
    )
    review_app_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._\-]{1,200}$",
        description="faust app id of the review service (its consumer group and changelog topic "
        "prefix); default --group-id, else <topic_prefix>facestream-review",
    )
    review_data_dir: Path | None = Field(
        None, description="faust's local data directory; default facestream-review under the temp dir"
    )

    @field_validator("review_trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        """Refuse a typo at start-up rather than silently trusting nobody (or everybody)."""
        proxy_networks(value)
        return value

    @field_validator("review_sso_user_header")
    @classmethod
    def _sso_needs_a_proxy(cls, value: str, info: ValidationInfo) -> str:
        """A user header believed from anyone would let anyone sign in as anyone: refuse to start."""
        if value and not proxy_networks(info.data.get("review_trusted_proxies") or ""):
            raise ValueError(
                "SSO needs --review-trusted-proxies: the user header is believed only from the proxy "
                "that signs people in, and none is configured"
            )
        return value

    @field_validator("review_sso_reviewer_groups")
    @classmethod
    def _sso_needs_groups(cls, value: str, info: ValidationInfo) -> str:
        """SSO with no reviewers' group, or no header to read groups from, would refuse everyone."""
        if info.data.get("review_sso_user_header"):
            if not sso_groups(value):
                raise ValueError("SSO is on (--review-sso-user-header) but no reviewers' group is named")
            if not info.data.get("review_sso_groups_header"):
                raise ValueError("SSO is on but --review-sso-groups-header is empty")
        return value


def proxy_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """The networks of --review-trusted-proxies; ValueError on anything that is not an address or CIDR."""
    out = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            out.append(ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {part!r}") from None
    return tuple(out)


def sso_groups(value: str) -> frozenset[str]:
    """The groups of --review-sso-reviewer-groups (or of a groups header): comma-separated, trimmed."""
    return frozenset(part.strip() for part in value.split(",") if part.strip())
