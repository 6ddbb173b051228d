"""facestream scale report: the gallery at city scale, the pipeline through a real broker, the
sampler's cost per camera, the reviewers' workload, and the capacity model built from them.

    .venv/bin/python load-tests/scale_report.py [--size smoke|quick|full] [--parts a,b] [--out DIR]

(`make scale-report` runs the full size.) Writes DIR/scale-<timestamp>/report.json, report.md
and the plots (default DIR: load-tests/reports). The parts run one after another, never
together, so none measures another's load. `--size smoke` takes a minute or two and only shows
that the harness works and the report is well formed (CI runs it); figures come from `full`.
Speed targets live here and in docs/benchmarks.md, never in the tests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scalelab import Context  # noqa: E402
from scalelab.clocks import machine_description  # noqa: E402

REPO = HERE.parent
FACES = Path(os.environ.get("FACESTREAM_FACES", REPO.parent / "shared" / "data" / "faces"))
# In the order they run and appear; capacity last, since it is computed from the others.
PARTS = ("sampler", "pipeline", "gallery", "reviewer", "capacity")


def run_parts(ctx: Context, names: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        module = importlib.import_module(f"scalelab.{name}")
        print(f"scale-report: {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = module.run(ctx, results) if name == "capacity" else module.run(ctx)
        except Exception as exc:  # one part failing must not lose the others' figures
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["part_wall_s"] = round(time.monotonic() - started, 1)
        results[name] = result
        print(f"scale-report: {name} done in {result['part_wall_s']} s (wall)", file=sys.stderr, flush=True)
    return results


def write(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# facestream scale report, {report['at']} ({report['size']})",
        "",
        f"Machine: {report['machine']}. Each figure says its clock: CPU figures come from CPU clocks "
        "(user+system time of the processes named), wall figures from a wall clock.",
        "",
    ]
    written: list[Path] = []
    for name, result in report["parts"].items():
        if "error" in result:
            lines += [f"## {name}", "", f"FAILED: {result['error']}", ""]
            continue
        module = importlib.import_module(f"scalelab.{name}")
        pngs = module.plots(result, out)
        written += pngs
        lines += module.markdown(result)
        lines += [f"![{p.stem}]({p.name})" for p in pngs]
        lines.append("")
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return [out / "report.json", out / "report.md", *written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("smoke", "quick", "full"), default="full")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=REPO / "load-tests" / "reports")
    args = parser.parse_args(argv)
    names = [n for n in args.parts.split(",") if n]
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not (FACES / "enroll").is_dir():
        parser.error(f"test photos not found at {FACES}; set FACESTREAM_FACES")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="facestream-scale-") as tmp:
        ctx = Context(repo=REPO, faces=FACES, work=Path(tmp), size=args.size)
        report: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "size": args.size,
            "machine": machine_description(),
            "parts": run_parts(ctx, names),
        }
    report["total_wall_s"] = round(time.monotonic() - started, 1)
    out = args.out / f"scale-{stamp}"
    for path in write(report, out):
        print(path)
    failed = [n for n, r in report["parts"].items() if "error" in r]
    if failed:
        print(f"scale-report: part(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
