"""The rows a Milvus Lite partition keeps, on disk while the partition is rewritten.

Why: Milvus Lite erases entries only by dropping their partition and inserting the rest again
(gallery/store.py). A process killed between the drop and the last insert lost the rest: the
authorisation's other watchlist entries were gone, with no record and no error, and the matcher
simply stopped finding those people. So the rows to keep are written here first (a temporary
file, fsync, rename), the partition is rewritten from them, and the file is removed only after a
flush; a Gallery that opens and finds such a file finishes that rewrite before anything else.

The file sits in the gallery's own directory and holds what the gallery's files already hold for
the kept entries (their fields and vectors), nothing of the entries being erased.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_SUFFIX = ".npz"
_PARTIAL = ".partial"


@dataclass(frozen=True, slots=True)
class PendingRewrite:
    """A rewrite that was started and not seen to finish: the partition and its rows' file."""

    partition: str
    path: Path


@dataclass(frozen=True, slots=True)
class RewriteJournal:
    """One file per partition being rewritten, named after the collection and the partition."""

    directory: Path
    collection: str

    def keep(
        self, partition: str, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]
    ) -> PendingRewrite:
        """Write the rows durably; once this returns, the rewrite can be finished after a crash."""
        path = self.directory / f"rewrite.{self.collection}.{partition}{_SUFFIX}"
        partial = path.with_name(path.name + _PARTIAL)
        columns = {f: np.asarray([r[f] for r in rows]) for f in fields if f != "vector"}
        vectors = [np.asarray(r["vector"], dtype=np.float32) for r in rows]
        columns["vector"] = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        # Owner-only, as the vectors are biometric data (the gallery's own files are the server's).
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            np.savez(out, allow_pickle=False, **columns)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
        _sync_directory(self.directory)
        return PendingRewrite(partition, path)

    def pending(self) -> list[PendingRewrite]:
        """Rewrites left unfinished, oldest partition name first. A partial file (the process died
        while writing it, before the partition was touched) is removed: nothing depends on it."""
        prefix = f"rewrite.{self.collection}."
        for partial in self.directory.glob(f"{prefix}*{_SUFFIX}{_PARTIAL}"):
            partial.unlink(missing_ok=True)
        return [
            PendingRewrite(p.name[len(prefix) : -len(_SUFFIX)], p)
            for p in sorted(self.directory.glob(f"{prefix}*{_SUFFIX}"))
        ]

    @staticmethod
    def rows(pending: PendingRewrite) -> list[dict[str, Any]]:
        """The rows as Milvus takes them back: str and int fields, float32 vectors."""
        with np.load(pending.path, allow_pickle=False) as data:
            columns = {name: data[name] for name in data.files}
        vectors = columns.pop("vector")
        out: list[dict[str, Any]] = []
        for i in range(len(vectors)):
            row: dict[str, Any] = {name: column[i].item() for name, column in columns.items()}
            row["vector"] = vectors[i]
            out.append(row)
        return out

    def done(self, pending: PendingRewrite) -> None:
        """The partition holds the rows again, flushed: forget them."""
        pending.path.unlink(missing_ok=True)
        _sync_directory(self.directory)


def _sync_directory(directory: Path) -> None:
    """A rename or unlink is durable once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
