"""The scale report's parts: each measures one thing and returns plain data.

`load-tests/scale_report.py` runs the parts in one process, one after another (never two at
once: they would measure each other), and writes one report: JSON, Markdown and PNG plots.

Every part is a module with three functions:

    run(ctx: Context) -> dict[str, Any]            # measures; JSON-serialisable figures only
    markdown(result: dict[str, Any]) -> list[str]  # its section of the report, lines
    plots(result: dict[str, Any], out: Path) -> list[Path]   # PNGs it wrote into `out`

Figures carry their clock in their key: `*_cpu_s` / `cpu_*` come from a CPU clock (a process's
or a process tree's user+system time, see clocks.py), `*_wall_s` / `*_ms` latencies from a wall
clock (time.monotonic / time.perf_counter). Every Markdown label says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Context:
    """What every part is given."""

    repo: Path
    faces: Path
    """../shared/data/faces (FACESTREAM_FACES overrides)."""
    work: Path
    """A scratch directory of this run, removed afterwards."""
    size: str
    """'smoke' (CI: seconds, checks the harness and the report's form), 'quick', or 'full'."""
