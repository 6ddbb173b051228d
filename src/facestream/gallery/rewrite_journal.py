"""The rows a Milvus Lite partition keeps, stored apart while the partition is rewritten.

Why: Milvus Lite erases entries only by dropping their partition and inserting the rest again
(gallery/store.py): its `delete` hides rows and its `compact` leaves them on disk, embedded or
as `milvus-lite server` (the chart's default gallery). A process killed between the drop and the
last insert lost the rest: the authorisation's other watchlist entries were gone, with no record
and no error, and the matcher simply stopped finding those people.

So the rows to keep are first copied into a collection of their own, beside the gallery's and in
the same Milvus (so the journal is where the gallery is, whichever process or pod runs the
rewrite), and flushed; a marker row, flushed after them, says the copy is complete. Then the
partition is rewritten from the copy, and the copy is deleted; once no rewrite is left the
journal collection is dropped, which removes its files. A Gallery that opens and finds a complete
copy finishes that rewrite before anything else; an incomplete one (the process died while
copying, before the partition was touched) is discarded.

The journal holds what the gallery already holds for the kept entries (their fields and vectors),
nothing of the entries being erased.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import CollectionSchema, DataType, MilvusClient

from facestream.gallery.lite_grpc import quiet_unimplemented_rpcs

SUFFIX = "_rewrites"
"""The journal collection is the gallery's collection name with this suffix."""
_MARKER = "complete:"
"""entry_id prefix of the row that says a partition's copy is complete (real ids are hex)."""
_WRITE_ROWS = 8192
_PAGE = 8192
_STRONG = "Strong"

Call = Callable[..., Any]
"""The gallery's wrapper around every client call (errors become GalleryUnavailable)."""
Load = Callable[[str], None]
"""The gallery's way to load a collection it opens (Gallery._load: it repairs Lite's index files)."""


@dataclass(frozen=True, slots=True)
class PendingRewrite:
    """A partition whose kept rows are completely copied into the journal."""

    partition: str


class RewriteJournal:
    """The journal collection of one gallery collection."""

    def __init__(
        self,
        client: MilvusClient,
        collection: str,
        fields: Sequence[str],
        schema: Callable[[], CollectionSchema],
        dim: int,
        call: Call,
        load: Load,
    ) -> None:
        """`fields`: the gallery's scalar fields; `schema`: a new schema of the gallery's rows, to
        which the journal adds the partition each row came from."""
        self._client = client
        self.name = collection + SUFFIX
        self._fields = [f for f in fields if f != "vector"]
        self._schema = schema
        self._dim = dim
        self._call = call
        self._load = load

    def keep(self, partition: str, rows: Sequence[dict[str, Any]]) -> PendingRewrite:
        """Copy the rows, then mark the copy complete; once this returns, the rewrite can be
        finished after a crash."""
        self._ensure()
        # An unfinished copy of this partition (another client of a `milvus-lite server` that died
        # while copying) must not mix with this one: it may hold rows this removal erases.
        self._forget(partition)
        copied = [{**r, "partition": partition} for r in rows]
        for start in range(0, len(copied), _WRITE_ROWS):
            self._call(self._client.insert, self.name, copied[start : start + _WRITE_ROWS])
        self._call(self._client.flush, self.name)
        self._call(self._client.insert, self.name, [self._marker(partition)])
        self._call(self._client.flush, self.name)
        return PendingRewrite(partition)

    def pending(self) -> list[PendingRewrite]:
        """Complete copies left by a process that did not finish their rewrite; incomplete ones
        (no marker: the partition was not touched yet) are discarded."""
        if not self._call(self._client.has_collection, self.name):
            return []
        self._load(self.name)
        partitions = {str(r["partition"]) for r in self._all('entry_id != ""', ["partition"])}
        complete = {str(r["partition"]) for r in self._all(f'entry_id like "{_MARKER}%"', ["partition"])}
        for partition in sorted(partitions - complete):
            self._forget(partition)
        if not complete:
            self._drop_if_empty()
        return [PendingRewrite(p) for p in sorted(complete)]

    def rows(self, pending: PendingRewrite) -> list[dict[str, Any]]:
        """The copied rows, as the gallery's collection takes them back."""
        expr = f'partition == "{pending.partition}" and entry_id != "{_MARKER}{pending.partition}"'
        out = []
        for row in self._all(expr, [*self._fields, "vector"]):
            kept = {f: row[f] for f in self._fields}
            kept["vector"] = np.asarray(row["vector"], dtype=np.float32)
            out.append(kept)
        return out

    def done(self, pending: PendingRewrite) -> None:
        """The partition holds its rows again, flushed: forget the copy, and drop the journal once
        nothing is left in it (deleting rows only hides them on Milvus Lite; dropping erases)."""
        self._forget(pending.partition)
        self._drop_if_empty()

    def discard(self) -> None:
        """Drop the journal of a gallery collection that no longer exists: its rows must not come
        back in a new one."""
        if self._call(self._client.has_collection, self.name):
            self._call(self._client.drop_collection, self.name)

    def _forget(self, partition: str) -> None:
        self._call(self._client.delete, self.name, filter=f'partition == "{partition}"')

    def _drop_if_empty(self) -> None:
        counted = self._call(
            self._client.query,
            self.name,
            filter="",
            output_fields=["count(*)"],
            consistency_level=_STRONG,
        )
        if int(counted[0]["count(*)"]) == 0:
            self._call(self._client.drop_collection, self.name)

    def _marker(self, partition: str) -> dict[str, Any]:
        row: dict[str, Any] = {f: 0 if f.endswith("_ms") else "" for f in self._fields}
        vector = np.zeros(self._dim, dtype=np.float32)
        vector[0] = 1.0  # a zero vector has no cosine
        row.update(entry_id=_MARKER + partition, partition=partition, vector=vector)
        return row

    def _all(self, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            pages = self._client.query_iterator(
                self.name, batch_size=_PAGE, filter=expr, output_fields=fields
            )
            rows: list[dict[str, Any]] = []
            try:
                while page := pages.next():
                    rows.extend(dict(r) for r in page)
            finally:
                pages.close()
            return rows

        return list(self._call(read))

    def _ensure(self) -> None:
        if self._call(self._client.has_collection, self.name):
            self._load(self.name)
            return
        schema = self._schema()
        schema.add_field("partition", DataType.VARCHAR, max_length=64)
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        with quiet_unimplemented_rpcs(enabled=True):  # embedded Lite logs it in this process
            self._call(self._client.create_collection, self.name, schema=schema, index_params=index)
