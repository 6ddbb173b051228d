"""Gallery erasures whose audit records are written down before the erasure, so none goes unrecorded.

Why: an erasure and its audit record are two writes to two stores. A process killed between them
(or an audit store down at that moment) left entries erased that the audit log never showed: on
Milvus Lite the next open even finishes a removal the dead process had begun
(gallery/rewrite_journal.py), and on a Milvus server the delete has taken effect at once.

So the records are first kept in a file of their own under `erasures/` in the state directory,
fsynced and locked (`flock`) for as long as the erasing process lives; then the entries are
erased, the records appended to the audit log, and the file removed. After each record but the
last is appended the file is replaced by one holding only the records still to append, so an
audit log that takes one record of an erasure and refuses the next leaves the sweep only the rest
(a death between an append and the replacement still repeats that one record: at least once).

The sweep that every command and the matcher run (accountability/purge.py) finishes the files
nobody holds any more: records whose entries (or, for an authorisation's purge, photos) are gone
are appended, with `recorded_after_restart` and, where only some went, `not_erased` /
`photos_not_erased`; records none of whose entries and photos went are dropped (the erasure never
began).

A file holds what the audit record will say (entry ids, photo ids, which are digests, an identity's
name), nothing of a face.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from facestream.accountability.audit import Actor, AuditWriter
from facestream.accountability.clock import now_ms
from facestream.accountability.photos import photos_of, purge_photos
from facestream.gallery.store import Gallery, GalleryEntry

log = logging.getLogger(__name__)

DIRECTORY = "erasures"
"""Under the state directory: one file per erasure under way."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ErasureRecord:
    """One audit record of an erasure, and the entries whose absence shows that it happened."""

    action: str
    entry_ids: tuple[str, ...]
    authorisation_id: str | None = None
    objects: Mapping[str, Any] = field(default_factory=dict)
    photo_ids: tuple[str, ...] = ()
    """Photos of `authorisation_id` the erasure deletes (an authorisation's purge): their absence
    shows it happened where no entry's can (all were erased before, or no process had the gallery)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    actor: Actor
    began_at_ms: int
    records: tuple[ErasureRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "actor": {"name": self.actor.name, "role": self.actor.role},
            "began_at_ms": self.began_at_ms,
            "records": [
                {
                    "action": r.action,
                    "entry_ids": list(r.entry_ids),
                    "authorisation_id": r.authorisation_id,
                    "objects": dict(r.objects),
                    "photo_ids": list(r.photo_ids),
                }
                for r in self.records
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Pending:
        return cls(
            actor=Actor(str(doc["actor"]["name"]), str(doc["actor"]["role"])),
            began_at_ms=int(doc["began_at_ms"]),
            records=tuple(
                ErasureRecord(
                    action=str(r["action"]),
                    entry_ids=tuple(str(i) for i in r["entry_ids"]),
                    authorisation_id=r["authorisation_id"],
                    objects=dict(r["objects"]),
                    photo_ids=tuple(str(i) for i in r.get("photo_ids", ())),  # absent before 2026-12-07
                )
                for r in doc["records"]
            ),
        )


class RecordedErasures:
    """Erases gallery entries together with their audit records (see the module docstring)."""

    def __init__(self, state_dir: Path, audit: AuditWriter) -> None:
        self.state_dir = state_dir
        self.directory = state_dir / DIRECTORY
        self.audit = audit

    def erase(self, gallery: Gallery, actor: Actor, records: Sequence[ErasureRecord]) -> list[GalleryEntry]:
        """Erase every entry the records name and append the records; returns the entries that
        existed. If the process dies, or the audit log refuses, after the records were kept, the
        next sweep appends those whose entries are gone."""
        entry_ids = list(dict.fromkeys(i for r in records for i in r.entry_ids))
        if not entry_ids:
            return []
        return self._recorded(actor, records, lambda: gallery.remove_entries(entry_ids))

    def purge_authorisation(
        self, gallery: Gallery | None, actor: Actor, authorisation_id: str, objects: Mapping[str, Any]
    ) -> int:
        """Erase an authorisation's kept photos, then (given the gallery) every entry of it, its
        partition dropped, and append one `gallery.purge` record: `objects` with the counts of
        `entries` and `photos`; returns the count of entries. Recorded after a death as `erase` is,
        when entries or photos went. Without the gallery and with no photo, nothing is recorded."""
        entry_ids = (
            ()
            if gallery is None
            else tuple(e.entry_id for e in gallery.entries_of_authorisation(authorisation_id))
        )
        photo_ids = tuple(photos_of(self.state_dir, authorisation_id))
        if gallery is None and not photo_ids:
            return 0
        counts = {"entries": len(entry_ids), "photos": len(photo_ids)}
        record = ErasureRecord("gallery.purge", entry_ids, authorisation_id, {**objects, **counts}, photo_ids)

        def erase() -> None:
            purge_photos(self.state_dir, authorisation_id)
            if gallery is not None:
                gallery.remove_authorisation(authorisation_id)

        self._recorded(actor, [record], erase)
        return len(entry_ids)

    def _recorded(self, actor: Actor, records: Sequence[ErasureRecord], erase: Callable[[], T]) -> T:
        """Keep the records, erase, append them (the file keeping only those not yet appended),
        forget them (see the module docstring)."""
        pending = _Pending(actor, now_ms(), tuple(records))
        with self._kept(pending) as kept:
            erased = erase()
            for done, record in enumerate(records, start=1):
                self.audit.append(
                    actor=actor,
                    action=record.action,
                    authorisation_id=record.authorisation_id,
                    objects=record.objects,
                )
                if done < len(records):
                    kept.write(replace(pending, records=tuple(records[done:])))
            kept.remove()
        return erased

    def finish_pending(self, gallery: Gallery | None) -> int:
        """Append the records of erasures whose process is gone (see the module docstring);
        returns how many records were appended. Without the gallery, only those that name no
        entry (a purge of photos alone); the others wait for a sweep that has it."""
        appended = 0
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            with _held(path) as held:
                if not held:
                    continue  # its process is still erasing, or has just finished
                appended += self._finish(path, gallery)
        return appended

    def _finish(self, path: Path, gallery: Gallery | None) -> int:
        try:
            pending = _Pending.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            # Written whole and fsynced before its name appeared: damage is not from a crash.
            log.error("erasures: %s is unreadable (%s); left for an operator to inspect", path, exc)
            return 0
        all_ids = [i for r in pending.records for i in r.entry_ids]
        if all_ids and gallery is None:
            return 0  # which entries are gone, only a sweep with the gallery can tell
        left = {e.entry_id for e in gallery.entries_with_ids(all_ids)} if gallery is not None else set()
        appended = 0
        for record in pending.records:
            not_erased = [i for i in record.entry_ids if i in left]
            kept = (
                set(photos_of(self.state_dir, record.authorisation_id or "")) if record.photo_ids else set()
            )
            photos_not_erased = [i for i in record.photo_ids if i in kept]
            if len(not_erased) == len(record.entry_ids) and len(photos_not_erased) == len(record.photo_ids):
                continue  # none of its entries or photos went: this erasure never began
            objects = {**record.objects, "recorded_after_restart": True, "began_at_ms": pending.began_at_ms}
            if not_erased:
                objects["not_erased"] = not_erased
            if photos_not_erased:
                objects["photos_not_erased"] = photos_not_erased
            self.audit.append(
                actor=pending.actor,
                action=record.action,
                authorisation_id=record.authorisation_id,
                objects=objects,
            )
            appended += 1
        if appended:
            log.warning(
                "erasures: %d audit record(s) recorded of an erasure begun at %d by %s, whose process ended",
                appended,
                pending.began_at_ms,
                pending.actor.name,
            )
        else:
            log.info(
                "erasures: an erasure begun at %d by %s never began erasing; nothing to record",
                pending.began_at_ms,
                pending.actor.name,
            )
        path.unlink()
        return appended

    @contextlib.contextmanager
    def _kept(self, pending: _Pending) -> Iterator[_PendingFile]:
        """The records in a file of their own, locked while the block runs (see `_PendingFile`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = _PendingFile(self.directory / f"{uuid.uuid4().hex}.json")
        try:
            kept.write(pending)
            yield kept
        finally:
            kept.close()


class _PendingFile:
    """An erasure's file of records, locked by this process for as long as it is open.

    Each version is written whole to a temporary name, locked, fsynced and renamed over the file,
    so a sweep never reads half of one; the previous version's lock is released only after the
    rename, so no moment leaves the name unlocked (a sweep that opened the old version finds the
    name naming another file and leaves it, `_held`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def write(self, pending: _Pending) -> None:
        tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps(pending.to_json(), sort_keys=True).encode())
            os.fsync(fd)
            os.rename(tmp, self.path)
            _fsync_directory(self.path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # only if the rename was never reached
            os.close(fd)
            raise
        self.close()  # the previous version's lock, now that the name is the new one's
        self._fd = fd

    def remove(self) -> None:
        """Every record is appended: the file goes (its lock with it, at `close`)."""
        self.path.unlink()
        _fsync_directory(self.path.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def _held(path: Path) -> Iterator[bool]:
    """True while this process holds the file's lock and the name still names the locked file (its
    writer may have finished and removed it between our open and our lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
