"""Settings of the review service: the review window, the web app, faust's app id and data dir.

Same conventions as facestream.settings (frozen; every field a flag and an env var); field
names start with `review_` because each becomes a flag of the same name.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from facestream.transport.topics import DAY_MS

_CONFIG = SettingsConfigDict(env_prefix="FACESTREAM_", frozen=True, extra="forbid", protected_namespaces=())


class ReviewSettings(BaseSettings):
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
