"""CPU clocks for processes the report starts, and the machine's CPU load.

A CPU figure comes from a CPU clock: user+system time the kernel accounted to a process (and,
for a tree, to its live descendants and its reaped children), read from /proc. A wall figure
comes from time.monotonic(). Nothing here converts one into the other.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # the command name may hold spaces and parentheses: split after the last ')'
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def process_cpu_s(pid: int, *, children: bool = True) -> float:
    """User+system CPU seconds of one process; with `children`, plus its reaped children's."""
    fields = _stat_fields(pid)
    # after ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def descendants(pid: int) -> list[int]:
    """Live descendants of a process (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live descendants, and every child any of them reaped."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            total += process_cpu_s(member)
        except (OSError, IndexError, ValueError):  # exited between listing and reading
            continue
    return total


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its live descendants, MB."""
    total_kb = 0
    for member in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


@dataclass(frozen=True)
class MachineCpu:
    """A reading of /proc/stat: CPU time of the whole machine, busy and in total."""

    busy_s: float
    total_s: float
    at_wall_s: float

    @staticmethod
    def read() -> MachineCpu:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in first[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        return MachineCpu((sum(values) - idle) / _TICKS, sum(values) / _TICKS, time.monotonic())

    def load_since(self, earlier: MachineCpu) -> float:
        """Share of all cores busy between two readings (0..1), from the CPU clock."""
        total = self.total_s - earlier.total_s
        return (self.busy_s - earlier.busy_s) / total if total > 0 else 0.0


def machine_description() -> str:
    import platform

    import cv2
    import onnxruntime as ort

    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{platform.machine()}, {os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__} {ort.get_available_providers()}, OpenCV {cv2.__version__}"
    )
