"""`facestream gallery enroll|list|remove` as an operator runs them: a real process, JSON lines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from facestream.settings import ModelSettings
from tests.fixtures.media import facestream_cli, grant_authorisation, non_log_lines

pytestmark = pytest.mark.subprocess  # the real CLI in its own process


def facestream(*args: str, model_settings: ModelSettings) -> subprocess.CompletedProcess[str]:
    return facestream_cli(*args, model_dir=model_settings.model_dir)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Everything on stderr but plain log records is one line: the error (a usage error names the
    subcommand: `facestream gallery enroll: error: ...`)."""
    (line,) = non_log_lines(result.stderr)
    assert re.match(r"facestream( [a-z-]+)*: error: ", line), line
    return line


def test_enroll_list_remove(faces_dir: Path, tmp_path: Path, model_settings: ModelSettings) -> None:
    gallery = str(tmp_path / "gallery")
    enroll = faces_dir / "enroll"
    auth = grant_authorisation(gallery, model_dir=model_settings.model_dir)

    obama = facestream(
        "gallery", "enroll", "--gallery", gallery, "--identity", "obama", "--authorisation", auth,
        str(enroll / "obama_1.jpg"), str(enroll / "obama_2.jpg"),
        model_settings=model_settings,
    )  # fmt: skip
    assert obama.returncode == 0, obama.stderr
    (enrolled,) = json_lines(obama.stdout)
    assert enrolled["identity"] == "obama"
    obama_ids = {e["entry_id"] for e in enrolled["entries"]}
    assert len(obama_ids) == 2

    biden = facestream(
        "gallery", "enroll", "--gallery", gallery, "--identity", "biden", "--authorisation", auth,
        str(enroll / "biden_2.jpg"),
        model_settings=model_settings,
    )  # fmt: skip
    assert biden.returncode == 0, biden.stderr
    assert len(json_lines(biden.stdout)[0]["entries"]) == 1

    refused = facestream(
        "gallery", "enroll", "--gallery", gallery, "--identity", "both", "--authorisation", auth,
        str(enroll / "rose_leslie_1.jpg"), str(faces_dir / "scenes" / "two_people.jpg"),
        model_settings=model_settings,
    )  # fmt: skip
    assert refused.returncode != 0
    assert refused.stdout == ""
    assert "two_people.jpg: ambiguous" in one_line_error(refused)

    listed = facestream("gallery", "list", "--gallery", gallery, model_settings=model_settings)
    assert listed.returncode == 0, listed.stderr
    rows = json_lines(listed.stdout)
    assert sorted(r["identity"] for r in rows) == ["biden", "obama", "obama"]
    assert {r["entry_id"] for r in rows if r["identity"] == "obama"} == obama_ids
    assert all(r["valid_until_ms"] > r["enrolled_at_ms"] > 0 for r in rows)
    assert {r["authorisation_id"] for r in rows} == {auth}

    removed = facestream(
        "gallery", "remove", "--gallery", gallery, "--identity", "obama", model_settings=model_settings
    )
    assert removed.returncode == 0, removed.stderr
    (gone,) = json_lines(removed.stdout)
    assert (gone["identity"], gone["removed_entries"]) == ("obama", 2)

    listed = facestream("gallery", "list", "--gallery", gallery, model_settings=model_settings)
    assert [r["identity"] for r in json_lines(listed.stdout)] == ["biden"]

    again = facestream(
        "gallery", "remove", "--gallery", gallery, "--identity", "obama", model_settings=model_settings
    )
    assert again.returncode == 2
    assert again.stdout == ""
    assert "not enrolled" in one_line_error(again)


@pytest.mark.parametrize("command", ["enroll", "remove"])
def test_an_identity_with_a_quote_is_refused(
    command: str, faces_dir: Path, tmp_path: Path, model_settings: ModelSettings
) -> None:
    gallery = str(tmp_path / "gallery")
    extra = []
    if command == "enroll":
        auth = grant_authorisation(gallery, model_dir=model_settings.model_dir)
        extra = ["--authorisation", auth, str(faces_dir / "enroll" / "obama_1.jpg")]
    result = facestream(
        "gallery", command, "--gallery", gallery, "--identity", 'Barack "the" Obama', *extra,
        model_settings=model_settings,
    )  # fmt: skip
    assert result.returncode == 2  # a usage error, the same for both
    assert result.stdout == ""
    assert "argument --identity: identity 'Barack \"the\" Obama' must be" in one_line_error(result)


@pytest.mark.parametrize("port", ["70000", "0", "grpc"])
def test_serve_lite_refuses_a_port_that_is_not_one(
    tmp_path: Path, port: str, model_settings: ModelSettings
) -> None:
    result = facestream(
        "gallery",
        "serve-lite",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        port,
        model_settings=model_settings,
    )
    assert result.returncode == 2
    assert f"'{port}' is not a port (1-65535)" in one_line_error(result)
    assert not (tmp_path / "data").exists()  # refused before the data directory was opened
