"""Reading what `facestream identify` writes: candidate lines and the `--summary` object on stdout,
log records and the closing summary on stderr."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fixtures.media import LOG_RECORD, non_log_lines

SUMMARY_HEAD = re.compile(r"^facestream identify: \d+ sources?, \d+ frames?, \d+ faces?, \d+ candidates?")


def split_summary(stderr: str) -> tuple[list[str], list[str]]:
    """(what came before the summary, the summary's lines). The summary is written once, last:
    its head line, then one indented line per SOURCE argument."""
    lines = stderr.splitlines()
    heads = [i for i, line in enumerate(lines) if SUMMARY_HEAD.match(line)]
    if not heads:
        return lines, []
    (start,) = heads
    block = lines[start:]
    assert all(line.startswith("  ") and not LOG_RECORD.match(line) for line in block[1:]), block
    return lines[:start], block


def noise(stderr: str) -> list[str]:
    """Lines on stderr that are neither log records nor the summary: tracebacks, library chatter."""
    before, _ = split_summary(stderr)
    return non_log_lines("\n".join(before))


def summary_lines(stderr: str) -> dict[str, str]:
    """The summary's per-source lines by source (the text before ` (`), without the head."""
    _, block = split_summary(stderr)
    assert block, f"no summary on stderr:\n{stderr}"
    return {line.strip().split(" (", 1)[0]: line.strip() for line in block[1:]}


def stdout_objects(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(candidate objects, the `--summary` object if there is one). The summary may only be last."""
    objects = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(o, dict) for o in objects)
    summary = objects.pop()["summary"] if objects and "summary" in objects[-1] else None
    assert not any("summary" in o for o in objects), "a summary before the end of stdout"
    return objects, summary
