"""A small JSON document in the gallery directory, changed under a file lock and replaced atomically.

Authorisations, roles and suspension rules are read by every command and, while it runs,
by the matcher; they are changed rarely, by people. So each lives in one JSON file: a
change takes an exclusive `fcntl` lock (two CLI processes cannot lose each other's edit),
writes a temporary file, fsyncs it and renames it over the old one, so a reader never sees
half a document. A file that does not parse is a ConfigError, never an empty state: an
unreadable authorisation list must not silently mean "no restrictions" or "no rights".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from facestream.camera.spec import describe_validation_error
from facestream.errors import ConfigError


def read_document(path: Path) -> dict[str, Any]:
    """The document, or {} when the file does not exist yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is damaged (not UTF-8 text); restore it from backup") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is damaged ({exc.msg} at line {exc.lineno}); restore it from backup"
        ) from None
    except RecursionError:  # found by tests/fuzz: "[[[[..." nested deep enough exhausts the stack
        raise ConfigError(f"{path} is damaged (JSON nested too deeply); restore it from backup") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is damaged (expected a JSON object); restore it from backup")
    return data


def damaged(path: Path, exc: Exception) -> ConfigError:
    """One line saying why a stored document is unusable (a pydantic error spans many lines)."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    why = describe_validation_error(exc) if isinstance(exc, ValidationError) else lines[0]
    return ConfigError(f"{path} is damaged ({why}); restore it from backup")


def write_document(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically: write beside it, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock for read-modify-write of `path` (a sibling .lock file, so renames are safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns): changes whenever the document is replaced; None if it is absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
