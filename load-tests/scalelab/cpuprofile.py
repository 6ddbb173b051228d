"""Where a service's CPU goes, measured on CPU clocks: per activity, per thread, per OS thread kind.

Run as a script it is a wrapper: `python cpuprofile.py OUT.json facestream-args...` runs
`facestream facestream-args...` in this process (facestream.cli.main, as the `facestream` command
does), with the functions in `TIMED` wrapped. Between SIGUSR1 and SIGUSR2 each wrapped call adds
its thread CPU time (time.thread_time), less that of wrapped calls inside it, to its activity;
so the activities' figures are exclusive and add up. SIGUSR2 writes OUT.json. Outside such a
window a wrapper costs one flag test, so the same processes serve unprofiled measurements.

Why not a sampling profiler: a thread that runs for a millisecond and then blocks (a runner
between polls) is seen blocked, and its CPU lands on the wait. Why not cProfile: its hook on every
Python call inflates exactly the Python-heavy parts whose cost is the question. A handful of
wrapped functions per batch, each read on its thread's CPU clock, costs microseconds.

What the wrappers cannot see is counted from the kernel: each live OS thread's CPU from
/proc/self/task (librdkafka's threads are named rdk:*), each Python thread's from its own clock
(short-lived ones, such as the transaction calls' threads, when they end), and the process total
from /proc/self/stat, which also holds threads that have exited.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")

TIMED: tuple[tuple[str, str, str, str], ...] = (
    # (module, class or "" for a module-level name, function, activity)
    (
        "facestream.runtime.runner",
        "StageRunner",
        "_one_batch",
        "runner: batch bookkeeping (offsets, metrics)",
    ),
    ("facestream.runtime.runner", "StageRunner", "_polled", "runner: health, metrics, lag queries"),
    ("facestream.runtime.runner", "StageRunner", "_watch_input", "runner: input stall watch"),
    ("facestream.runtime.runner", "StageRunner", "_catch_up", "runner: idle offset catch-up"),
    ("facestream.transport.kafka", "KafkaConsumer", "consume", "Kafka: consume (poll), calling thread"),
    ("facestream.transport.kafka", "KafkaProducer", "produce", "Kafka: produce, calling thread"),
    ("facestream.transport.kafka", "KafkaProducer", "flush", "Kafka: flush, calling thread"),
    (
        "facestream.transport.kafka",
        "TransactionalProducer",
        "begin",
        "Kafka: transaction calls, calling thread",
    ),
    (
        "facestream.transport.kafka",
        "TransactionalProducer",
        "commit",
        "Kafka: transaction calls, calling thread",
    ),
    ("facestream.codec", "Codec", "decode", "Avro decode (and checks)"),
    ("facestream.codec", "Codec", "encode", "Avro encode"),
    ("facestream.stages.detect", "DetectStage", "process", "stage code: detect (message building)"),
    ("facestream.stages.detect", "", "decode_jpeg", "model path: frame JPEG decode"),
    ("facestream.vision.faces", "FaceFinder", "find", "model path: detector, landmarks, align, quality"),
    ("facestream.stages.detect", "", "thumbnail_jpeg", "stage code: reviewer thumbnail (JPEG encode)"),
    ("facestream.stages.embed", "EmbedStage", "process", "stage code: embed (batching, message building)"),
    ("facestream.vision.embedder", "ArcFaceEmbedder", "embed", "model path: embedder"),
    ("facestream.stages.match", "MatchStage", "process", "stage code: match (grouping, hits)"),
    ("facestream.gallery.store", "Gallery", "search", "gallery: search (Milvus Lite, in process)"),
    ("facestream.accountability.policy", "AccountablePolicy", "refresh", "match policy: refresh per batch"),
)

_local = threading.local()
_lock = threading.Lock()
_active = threading.Event()
_exclusive: Counter[str] = Counter()
_calls: Counter[str] = Counter()
_ended_threads: Counter[str] = Counter()
_thread_base: dict[int, float] = {}
_window_serial = [0]
_missing: list[str] = []


def _timed(activity: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _active.is_set():
            return fn(*args, **kwargs)
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        start = time.thread_time()
        stack.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            inclusive = time.thread_time() - start
            inner = stack.pop()
            if stack:
                stack[-1] += inclusive
            with _lock:
                _exclusive[activity] += inclusive - inner
                _calls[activity] += 1

    return wrapper


def instrument() -> None:
    """Wrap every function in TIMED (where it is looked up: a name imported into a module is
    wrapped in that module), and every thread's run() so that a thread's CPU is kept when it ends."""
    for module_name, cls_name, name, activity in TIMED:
        module = importlib.import_module(module_name)
        owner = getattr(module, cls_name, None) if cls_name else module
        if owner is None or not hasattr(owner, name):
            _missing.append(f"{module_name}.{cls_name + '.' if cls_name else ''}{name}")
            continue  # the code moved on: that activity's CPU shows as its caller's
        setattr(owner, name, _timed(activity, getattr(owner, name)))
    run = threading.Thread.run

    def run_and_count(self: threading.Thread) -> None:
        window = _window_serial[0]
        try:
            run(self)
        finally:
            if _active.is_set():
                # begun in this window: all its CPU; else what it used since the window opened
                base = 0.0 if window == _window_serial[0] else _thread_base.get(threading.get_ident(), 0.0)
                with _lock:
                    _ended_threads[thread_kind(self.name)] += time.thread_time() - base

    threading.Thread.run = run_and_count  # type: ignore[method-assign]


def thread_kind(name: str) -> str:
    """A Python thread's name without its serial numbers (ThreadPoolExecutor-0_1 -> ThreadPoolExecutor)."""
    return re.sub(r"[-_ ]?\d+([-_ ]\d+)*", "", name).strip() or name


def thread_cpu(pid: int, python_tids: set[int] | None = None) -> dict[str, float]:
    """CPU seconds (user+system) per kind of OS thread of a process, from /proc: librdkafka's
    threads are named rdk:*, gRPC's grpc*/default-executor; the rest run Python and what it calls,
    or, when `python_tids` names the Python threads, are native threads of libraries (OpenCV's
    worker pool, say). Threads that have exited are the process's total less its live threads."""
    out: dict[str, float] = {}
    live = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        kind = (
            "librdkafka threads"
            if comm.startswith("rdk:")
            else "gRPC threads"
            if comm.startswith(("grpc", "default-execut", "resolver-execu", "global-cq"))
            else "Python threads (and the native code they call)"
            if python_tids is None or int(task.name) in python_tids
            else "native threads of libraries (OpenCV's pool, ...)"
        )
        used = (int(fields[11]) + int(fields[12])) / _TICKS
        out[kind] = out.get(kind, 0.0) + used
        live += used
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / _TICKS
        out["threads that have exited"] = max(0.0, total - live)
    except (OSError, IndexError):
        pass
    return out


def _python_threads() -> dict[int, tuple[str, float]]:
    out = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            out[thread.ident] = (thread.name, time.clock_gettime(time.pthread_getcpuclockid(thread.ident)))
        except (OSError, ProcessLookupError):
            continue
    return out


def _python_tids() -> set[int]:
    return {t.native_id for t in threading.enumerate() if t.native_id is not None}


class Window:
    """One profiled window: `reset()` opens it, `snapshot()` closes it and says what it saw."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._os_threads: dict[str, float] = {}

    def reset(self) -> None:
        with _lock:
            _exclusive.clear()
            _calls.clear()
            _ended_threads.clear()
            _thread_base.clear()
            _thread_base.update({ident: cpu for ident, (_, cpu) in _python_threads().items()})
            _window_serial[0] += 1
            self._started = time.monotonic()
            self._os_threads = thread_cpu(os.getpid(), _python_tids())
            _active.set()

    def snapshot(self) -> dict[str, Any]:
        with _lock:
            _active.clear()
            by_thread: Counter[str] = Counter(_ended_threads)
            for ident, (name, cpu) in _python_threads().items():
                by_thread[thread_kind(name)] += cpu - _thread_base.get(ident, 0.0)
            os_now = thread_cpu(os.getpid(), _python_tids())
            return {
                "window_wall_s": round(time.monotonic() - self._started, 2),
                "not_instrumented": list(_missing),
                "activities_cpu_s": {k: round(v, 4) for k, v in _exclusive.most_common()},
                "activity_calls": dict(_calls),
                "python_threads_cpu_s": {k: round(v, 4) for k, v in by_thread.most_common()},
                "os_threads_cpu_s": {
                    k: round(v - self._os_threads.get(k, 0.0), 3) for k, v in sorted(os_now.items())
                },
            }


def main() -> int:
    """The wrapper: SIGUSR1 opens the window, SIGUSR2 writes it to OUT.json (argv[1])."""
    out = Path(sys.argv[1])
    window = Window()

    def write(*_: object) -> None:
        partial = out.with_suffix(".tmp")
        partial.write_text(json.dumps(window.snapshot(), indent=2) + "\n")
        partial.replace(out)

    instrument()
    signal.signal(signal.SIGUSR1, lambda *_: window.reset())
    signal.signal(signal.SIGUSR2, write)
    from facestream.cli import main as facestream_main

    return facestream_main(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
