"""A camera's configuration, as published (keyed by camera id) on the compacted `cameras` topic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facestream.errors import ConfigError

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class CameraSpec(BaseModel):
    """One camera point; unknown keys are refused so a typo cannot silently change behaviour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    camera_id: str = Field(pattern=CAMERA_ID, description="unique id; the Kafka key of its frames")
    url: str = Field(
        min_length=1,
        description="video file, image file, folder of snapshots, rtsp:// or http(s):// stream",
    )
    fps: float | None = Field(None, gt=0, le=30, description="sampling rate; default the sampler's")
    zone: str = Field("default", pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="camera group, for rules")
    enabled: bool = Field(True, description="a disabled camera is not opened")
    start_at_ms: int | None = Field(
        None, ge=0, description="for files: the wall-clock time of media position 0 (default: when opened)"
    )

    @property
    def redacted_url(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL without user:password, for logs and the `source` field of every message."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def parse_camera(data: bytes | str | dict[str, object]) -> CameraSpec:
    """Validate one camera config; a bad one raises ConfigError saying what is wrong."""
    try:
        if isinstance(data, dict):
            return CameraSpec.model_validate(data)
        return CameraSpec.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "camera"
        raise ConfigError(f"invalid camera config: {where}: {first['msg']}") from None


def load_cameras(path: Path) -> list[CameraSpec]:
    """A JSON list of camera configs (the file `facestream cameras put` publishes)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read cameras file {path}: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a JSON list of cameras")
    cameras = [parse_camera(item) for item in raw]
    ids = [c.camera_id for c in cameras]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path}: duplicate camera ids: {', '.join(duplicates)}")
    return cameras


def camera_id_for(source: str) -> str:
    """A camera id derived from a source given on the command line."""
    parts = urlsplit(source)
    base = Path(parts.path).name or parts.hostname or "camera"
    cleaned = re.sub(r"[^A-Za-z0-9_.:\-]", "_", base)[:100].lstrip("._-:")
    return cleaned or "camera"
