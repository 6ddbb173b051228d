"""A camera's configuration, as published (keyed by camera id) on the compacted `cameras` topic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facestream.errors import ConfigError, InvalidMessage

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
ZONE = r"^[A-Za-z0-9_.\-]{1,64}$"
"""A zone (camera group) name: also what `hits`, `matches` and `alerts` may carry as one."""
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class CameraSpec(BaseModel):
    """One camera point; unknown keys are refused so a typo cannot silently change behaviour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    camera_id: str = Field(pattern=CAMERA_ID, description="unique id; the Kafka key of its frames")
    url: str = Field(
        min_length=1,
        repr=False,  # it may hold credentials; `redacted_url` is what logs may show
        description="video file, image file, folder of snapshots, rtsp:// or http(s):// stream",
    )
    fps: float | None = Field(
        None, gt=0, le=30, allow_inf_nan=False, description="sampling rate; default the sampler's"
    )
    zone: str = Field("default", pattern=ZONE, description="camera group, for rules")
    enabled: bool = Field(True, description="a disabled camera is not opened")
    start_at_ms: int | None = Field(
        None, ge=0, description="for files: the wall-clock time of media position 0 (default: when opened)"
    )
    decoder: Literal["auto", "pyav", "opencv"] = Field(
        "auto",
        description="video files and rtsp/udp/tcp streams: auto/pyav = PyAV, which decodes key frames "
        "only when the GOP <= the sampling interval, else each GOP up to its last sample; opencv = "
        "OpenCV, which decodes every frame. "
        "http(s) streams always use the MJPEG reader or OpenCV",
    )

    @model_validator(mode="after")
    def _pyav_reads_no_http(self) -> CameraSpec:
        """http(s) cameras are MJPEG (facestream's reader) or OpenCV: asked for, PyAV would be ignored."""
        if self.decoder == "pyav" and self.url.lower().startswith(("http://", "https://")):
            raise ValueError("decoder 'pyav' does not read http(s) streams; use auto or opencv")
        return self

    @property
    def redacted_url(self) -> str:
        return redact(self.url)


SECRET_PARAMS = re.compile(
    r"(user(name)?|login|pass(word|wd)?|pwd|token|access_token|api_?key|key|auth|secret|sig(nature)?)",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """The URL without credentials, for logs, metrics and the `source` field of every message.

    Credentials hide in two places in camera URLs: the user:password part, and query
    parameters such as `?user=admin&pwd=...` that many cheap cameras use instead.
    """
    try:
        parts = urlsplit(url)
        has_userinfo = parts.password is not None or parts.username is not None
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:  # e.g. a port that is not a number: show nothing that might be secret
        return "<unparseable url>"
    query = "&".join(_redact_param(p) for p in parts.query.split("&")) if parts.query else ""
    if not has_userinfo and query == parts.query:
        return url
    netloc = f"***@{host}" if has_userinfo else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The credential strings in a URL, longest first, to scrub from any text that might echo them.

    A bare user name is left out: it is no secret by itself, and scrubbing a short one
    ("op") would mangle ordinary words of the message.
    """
    try:
        parts = urlsplit(url)
        found = {parts.password or ""}
    except ValueError:
        return [url]
    for param in parts.query.split("&"):
        name, sep, value = param.partition("=")
        if sep and SECRET_PARAMS.fullmatch(name):
            found.add(value)
    if parts.password:
        found.add(f"{parts.username}:{parts.password}")
    return sorted((s for s in found if s), key=len, reverse=True)


def _redact_param(param: str) -> str:
    name, sep, _ = param.partition("=")
    return f"{name}=***" if sep and SECRET_PARAMS.fullmatch(name) else param


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first wrong field and what is wrong (never its value: it may be secret)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(_printable(p) for p in first["loc"]) or "camera"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _printable(part: object, limit: int = 40) -> str:
    """A field name as one short line: a hostile key (newlines, a megabyte) must not reshape the log."""
    text = str(part).encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_camera(data: bytes | str | dict[str, object]) -> CameraSpec:
    """Validate one camera config; a bad one raises ConfigError saying what is wrong.

    Bytes are either JSON or the Avro wire format of the `cameras` subject (first byte 0).
    """
    if isinstance(data, bytes) and data[:1] == b"\x00":
        from facestream import codec  # codec imports this module

        try:
            return codec.CAMERAS.decode(data)
        except InvalidMessage as exc:
            raise ConfigError(f"invalid camera config: {exc}") from None
    try:
        if isinstance(data, dict):
            return CameraSpec.model_validate(data)
        return CameraSpec.model_validate_json(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid camera config: {describe_validation_error(exc)}") from None


def load_cameras(path: Path) -> list[CameraSpec]:
    """A JSON list of camera configs (the file `facestream cameras put` publishes)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read cameras file {path}: {exc}") from None
    except RecursionError:  # json nests by recursion: "[[[[..." deep enough exhausts the stack
        raise ConfigError(f"cannot read cameras file {path}: JSON nested too deeply") from None
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
