"""The rewrite journal on its own (gallery/rewrite_journal.py): what it writes comes back as Milvus
takes it, only its owner can read it, and a file left half written is not taken for a rewrite.
The crash it exists for is tested with a real Milvus Lite in tests/accountability/test_purge.py."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from facestream.gallery.rewrite_journal import RewriteJournal

FIELDS = ["entry_id", "identity", "enrolled_at_ms", "vector"]


def test_rows_come_back_with_their_types_and_the_journal_is_owner_only(tmp_path: Path) -> None:
    journal = RewriteJournal(tmp_path, "faces")
    vectors = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    rows = [
        {"entry_id": "e1", "identity": "Zoë Ångström", "enrolled_at_ms": 2**40, "vector": vectors[0]},
        {"entry_id": "e22", "identity": "", "enrolled_at_ms": 7, "vector": vectors[1]},
    ]

    pending = journal.keep("auth_ab", rows, FIELDS)

    assert stat.S_IMODE(pending.path.stat().st_mode) == 0o600
    assert journal.pending() == [pending]
    back = journal.rows(pending)
    assert [{k: v for k, v in r.items() if k != "vector"} for r in back] == [
        {"entry_id": "e1", "identity": "Zoë Ångström", "enrolled_at_ms": 2**40},
        {"entry_id": "e22", "identity": "", "enrolled_at_ms": 7},
    ]
    assert all(type(r["entry_id"]) is str and type(r["enrolled_at_ms"]) is int for r in back)
    assert np.array_equal(np.stack([r["vector"] for r in back]), vectors)
    assert back[0]["vector"].dtype == np.float32

    journal.done(pending)
    assert journal.pending() == [] and list(tmp_path.iterdir()) == []


def test_an_empty_partition_is_journalled_too(tmp_path: Path) -> None:
    """Removing a partition's last entries rewrites it empty: that must survive a crash as well."""
    journal = RewriteJournal(tmp_path, "faces")
    pending = journal.keep("auth_ab", [], FIELDS)
    assert journal.rows(pending) == []


def test_a_half_written_journal_is_dropped_and_other_collections_are_left_alone(tmp_path: Path) -> None:
    """A process killed while writing the journal had not touched the partition yet: the partial
    file is deleted, not replayed. Another collection's journal in the same directory is its own."""
    journal = RewriteJournal(tmp_path, "faces")
    (tmp_path / "rewrite.faces.auth_cd.npz.partial").write_bytes(b"half")
    other = RewriteJournal(tmp_path, "other").keep("auth_ef", [], FIELDS)

    assert journal.pending() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.path.name]
    assert [p.partition for p in RewriteJournal(tmp_path, "other").pending()] == ["auth_ef"]
