"""Which zone (camera group) each camera is in, for authorisation scopes and suspension rules.

`identify` knows its sources' zones (`--zone`, default "default"). The matcher reads them
from a cameras file (`--cameras-file`, the JSON list published with `cameras put`), re-read
when it changes. A camera missing from it has an unknown zone (None): policy.py then fails
closed — zone rules suspend it and zone-scoped authorisations do not cover it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from facestream.accountability.jsonstore import signature
from facestream.camera.spec import load_cameras
from facestream.errors import ConfigError

log = logging.getLogger(__name__)


class CameraZones:
    def __init__(self, zones: Mapping[str, str] | None = None, *, cameras_file: Path | None = None) -> None:
        self._fixed = dict(zones or {})
        self._file = cameras_file
        self._from_file: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the cameras file if it changed; a bad file makes every zone unknown (fail closed)."""
        if self._file is None:
            return
        sig = signature(self._file)
        if sig == self._signature and sig is not None:
            return
        self._signature = sig
        try:
            self._from_file = {c.camera_id: c.zone for c in load_cameras(self._file)}
        except ConfigError as exc:
            log.error("camera zones unknown until the cameras file is fixed: %s", exc)
            self._from_file = {}

    def zone_of(self, camera_id: str) -> str | None:
        return self._fixed.get(camera_id) or self._from_file.get(camera_id)
