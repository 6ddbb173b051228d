"""Camera zones for the matcher: read from the cameras file, re-read on change, unknown when it is bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

from facestream.accountability.zones import CameraZones


def write(path: Path, cameras: list[dict[str, object]] | str) -> None:
    path.write_text(cameras if isinstance(cameras, str) else json.dumps(cameras))
    stamp = path.stat().st_mtime_ns + 1_000_000_000  # a distinct mtime even on coarse clocks
    os.utime(path, ns=(stamp, stamp))


def test_zones_follow_the_cameras_file(tmp_path: Path) -> None:
    cameras = tmp_path / "cameras.json"
    write(
        cameras,
        [
            {"camera_id": "cam-1", "url": "rtsp://x/1", "zone": "station"},
            {"camera_id": "cam-2", "url": "x.mp4"},
        ],
    )
    zones = CameraZones(cameras_file=cameras)
    assert (zones.zone_of("cam-1"), zones.zone_of("cam-2"), zones.zone_of("cam-9")) == (
        "station",
        "default",
        None,
    )

    write(cameras, [{"camera_id": "cam-1", "url": "rtsp://x/1", "zone": "old-town"}])
    zones.refresh()
    assert (zones.zone_of("cam-1"), zones.zone_of("cam-2")) == ("old-town", None)

    write(cameras, '[{"camera_id": "cam-1", "url": "rtsp://x/1", "zone": "old-town", "zoen": "typo"}]')
    zones.refresh()
    assert zones.zone_of("cam-1") is None  # a bad file: every zone unknown, the policy fails closed


def test_fixed_zones_for_identify(tmp_path: Path) -> None:
    zones = CameraZones({"a.jpg": "harbour"})
    assert (zones.zone_of("a.jpg"), zones.zone_of("b.jpg")) == ("harbour", None)
