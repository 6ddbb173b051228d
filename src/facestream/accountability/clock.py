"""Instants as epoch milliseconds (UTC), the unit of every timestamp in facestream's messages."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from facestream.errors import ConfigError


def now_ms() -> int:
    """The one wall clock of the package (tests patch or pass a clock where they need another)."""
    return int(time.time() * 1000)


def parse_instant(text: str, what: str) -> int:
    """ISO 8601 (`2027-01-31`, `2027-01-31T18:00`, `...Z`, `...+01:00`) to epoch ms.

    A time without an offset is read as UTC, so the same command means the same instant on
    every machine.
    """
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an ISO 8601 date/time (e.g. 2027-01-31T18:00Z)") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def iso(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
