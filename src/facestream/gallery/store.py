"""The watchlist gallery in Milvus: Milvus Lite in-process by default, a Milvus server by URI.

Milvus Lite lets one process own a data directory; in Kafka mode with several matchers,
run a Milvus server (or `milvus-lite server --data-dir ...`, which speaks the same gRPC
protocol) and point every matcher and the enrollment CLI at its URI.

Expiry is enforced at search time by a filter on `valid_until_ms`, not by Milvus' TTL
(stored but not enforced by Lite), so an expired entry cannot match even before it is
purged. Vectors of different models are never compared: the filter includes `model_id`.

Each authorisation's entries live in their own Milvus partition. Deleting rows only hides
them: Milvus Lite keeps deleted vectors in its WAL and segment files until a compaction it
may never run, and a purge must erase. Dropping a partition removes its files, so purging
an authorisation drops its partition, and removing single entries rewrites their
partition without them (on a Milvus server: delete, then compact). That holds for Milvus Lite
behind a URI too (`milvus-lite server`, the chart's default gallery), whose compaction erases
nothing either: the client asks the server what it is. The rows a rewrite keeps are stored apart
until it has finished (gallery/rewrite_journal.py), so a crash in the middle loses none.

On a Milvus server (measured on 2.3.5, tests/gallery/test_store_backends.py), reads are not
read-your-writes by default: collections get pymilvus' Bounded consistency, and a query or
search just after an upsert or delete still answered from before it. So every mutation ends
with a Strong read (`_settle`), after which any search sees it, and listing and counting read
Strong themselves. A server keeps what a purge removed in its message queue and object
storage until their retention and garbage collection end (docs/accountability.md): the erasure
above is complete only with Milvus Lite.

Values in filters. Every string that goes into a Milvus filter is checked against an alphabet
instead of escaped (`filter_value_problem`): ids (model, authorisation, entry) must be
`[A-Za-z0-9_.@:-]`, at most 128 characters, and are written between double quotes as they are.
Escaping was measured and refused (tests/gallery/test_filter_values.py): the two backends parse
escapes differently (a 2.3 server decodes `\u0041` and `\b` like Go's strconv, Milvus Lite
rejects both as unknown escapes), so a string escaped for one is a different string, or an error,
on the other, and the next Milvus version may differ again. An alphabet without quotes,
backslashes or spaces needs no escaping on any of them, so nothing can be injected whatever the
parser. What feeds the filters is made to fit: model ids are derived in that alphabet
(vision/models.py), authorisation and entry ids are generated hex. A record whose model id is
outside it cannot name any model in the gallery (`add` refuses such entries), and the matcher
dead-letters it (`bad_model_id`). Identities are free text, so they are the one exception:
quoted as they are, refusing only what would change the literal (quotes, backslashes, line
breaks and other control characters); `gallery remove --identity` is their only filter.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pymilvus import CollectionSchema, DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from facestream.errors import ConfigError, GalleryLocked, GalleryUnavailable
from facestream.gallery.lite_grpc import quiet_unimplemented_rpcs
from facestream.gallery.lite_sidecars import load_rebuilding_index
from facestream.gallery.rewrite_journal import PendingRewrite, RewriteJournal
from facestream.settings import GallerySettings

# pymilvus logs every failed RPC with a traceback; facestream reports failures itself.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
# Milvus Lite logs a locked data directory with a traceback; Gallery raises GalleryLocked instead.
logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)

FOREVER_MS = 2**62
LITE_VERSION_PREFIX = "milvus_lite"
"""How Milvus Lite names its version (`milvus_lite-3.2.2`), embedded or as `milvus-lite server`; a
Milvus server answers `v2.3.5`."""
QUERY_LIMIT = 16384
"""The most rows one query may ask for (offset + limit): a 2.3 server refuses a larger window
("invalid max query result window"), Milvus Lite takes one. A query given this limit returns at most
this many rows, so a listing that gets that many reads them all again through the query iterator
(`Gallery.entries`): nothing is cut."""
COLLECTION_NOT_LOADED = 101
"""`MilvusException.code` of a search or query on a released collection (Milvus' ErrCollectionNotLoaded;
pymilvus names no constant for it). Measured the same on Milvus Lite and a 2.3 server, whose messages
differ ("call load() before search/get/query" against "collection not loaded")."""
_STRONG = "Strong"
"""A read that waits until the server has applied every write made before it (about 200 ms on a
2.3 server, against ~6 ms Bounded): for listing, counting and settling, never for matching."""
_LOAD_WAIT_S = 10.0
_WRITE_ROWS = 8192
"""Rows per insert/upsert call: 8192 vectors of 512 floats are ~17 MB on the wire; a server refuses
a gRPC message over 64 MB (one call of 50,000 rows failed)."""
_LOOKUP_IDS = 1024
"""Entry ids per `entry_id in [...]` query when adding to a partition that holds entries."""
MAX_FILTER_VALUE = 128
"""The longest id a filter takes: the widest id column (`model_id`); a longer one matches nothing."""
_SAFE_CHARS = re.compile(r"[A-Za-z0-9_.@:\-]")
_SAFE = re.compile(rf"{_SAFE_CHARS.pattern}{{0,{MAX_FILTER_VALUE}}}")
MAX_IDENTITY_BYTES = 256
"""The identity column's width. A 2.3 server counts it in UTF-8 bytes (Milvus Lite in characters):
a longer identity cannot be stored, nor searched for."""


def filter_value_problem(value: str) -> str | None:
    """Why an id cannot be written into a gallery filter, or None when it can.

    An alphabet, not escaping: see the module docstring for why (the backends' escapes differ)."""
    if len(value) > MAX_FILTER_VALUE:
        return f"{len(value)} characters, over the {MAX_FILTER_VALUE} a gallery id may have"
    if not _SAFE.fullmatch(value):
        bad = "".join(sorted({c for c in value if not _SAFE_CHARS.fullmatch(c)}))
        return f"characters other than letters, digits and _ . @ : - ({shown(bad, 20)})"
    return None


def shown(value: str, limit: int = 80) -> str:
    """A value for an error message or a dead-letter header: repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} characters)"


def _quote(value: str, what: str) -> str:
    """A string literal for a Milvus filter, or ConfigError (one line at the CLI) saying why not."""
    problem = filter_value_problem(value)
    if problem is not None:
        raise ConfigError(f"{what} {shown(value)} cannot be used in a gallery filter: {problem}")
    return f'"{value}"'


@dataclass(frozen=True, slots=True)
class GalleryEntry:
    entry_id: str
    identity: str
    authorisation_id: str
    model_id: str
    photo_id: str
    enrolled_at_ms: int
    valid_until_ms: int


@dataclass(frozen=True, slots=True)
class GalleryHit:
    entry_id: str
    identity: str
    authorisation_id: str
    score: float


_ENTRY_FIELDS = [
    "entry_id",
    "identity",
    "authorisation_id",
    "model_id",
    "photo_id",
    "enrolled_at_ms",
    "valid_until_ms",
]


def partition_of(authorisation_id: str) -> str:
    """The Milvus partition of an authorisation's entries (a name Milvus accepts, for any id)."""
    return "auth_" + hashlib.sha256(authorisation_id.encode()).hexdigest()[:32]


def is_server_uri(gallery: str) -> bool:
    return gallery.startswith(("http://", "https://", "tcp://", "grpc://"))


class Gallery:
    """A thin, typed layer over one Milvus collection of watchlist vectors."""

    def __init__(self, settings: GallerySettings, *, dim: int = 512) -> None:
        self.settings = settings
        self.dim = dim
        self.collection = settings.collection
        self.is_server = is_server_uri(settings.gallery)
        # One client, shared by the matcher's stage and its purge thread: calls are serialised.
        self._lock = threading.RLock()
        self._closed = False
        self._client = self._connect(settings)
        self._lite_path = None if self.is_server else _hold_lite(Path(settings.gallery) / "milvus.db")
        try:
            self.is_lite = not self.is_server or self._call(self._client.get_server_version).startswith(
                LITE_VERSION_PREFIX
            )
            self._journal = (
                RewriteJournal(
                    self._client, self.collection, _ENTRY_FIELDS, self._schema, dim, self._call, self._load
                )
                if self.is_lite
                else None
            )
            self._ensure_collection()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _connect(settings: GallerySettings) -> MilvusClient:
        token = settings.gallery_token.get_secret_value() if settings.gallery_token else ""
        if is_server_uri(settings.gallery):
            try:
                return MilvusClient(uri=settings.gallery, token=token, timeout=10)
            except MilvusException as exc:
                raise GalleryUnavailable(f"cannot reach Milvus at {settings.gallery}: {exc}") from exc
        directory = Path(settings.gallery)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return MilvusClient(str(directory / "milvus.db"))
        except MilvusException as exc:
            raise GalleryLocked(
                f"gallery {directory} is in use by another process (Milvus Lite allows one owner); "
                "stop it, or run a Milvus server and use its URI"
            ) from exc

    def _ensure_collection(self) -> None:
        if self._call(self._client.has_collection, self.collection):
            # A reopened collection starts released; searching needs it loaded.
            self._load(self.collection)
            self._finish_rewrites()
            return
        schema = self._schema()
        index = self._client.prepare_index_params()
        params: dict[str, Any] = {}
        if self.settings.index_type == "HNSW":
            params = {"M": self.settings.hnsw_m, "efConstruction": self.settings.hnsw_ef_construction}
        elif self.settings.index_type == "IVF_FLAT":
            params = {"nlist": self.settings.ivf_nlist}
        # Declared with the collection: building an index after loading many rows is slow and, on
        # Milvus Lite, has failed outright (an index built after 1M rows took ~8 min, then the client
        # call failed as the server dropped the connection, and a retry said "index already exists").
        index.add_index("vector", index_type=self.settings.index_type, metric_type="COSINE", params=params)
        with quiet_unimplemented_rpcs(enabled=not self.is_server):
            self._call(self._client.create_collection, self.collection, schema=schema, index_params=index)
        if self._journal is not None:
            self._journal.discard()

    def _schema(self) -> CollectionSchema:
        """The fields of a gallery entry (the rewrite journal stores the same rows)."""
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("entry_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("identity", DataType.VARCHAR, max_length=256)
        schema.add_field("authorisation_id", DataType.VARCHAR, max_length=64)
        schema.add_field("model_id", DataType.VARCHAR, max_length=128)
        schema.add_field("photo_id", DataType.VARCHAR, max_length=64)
        schema.add_field("enrolled_at_ms", DataType.INT64)
        schema.add_field("valid_until_ms", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        return schema

    def _finish_rewrites(self) -> None:
        """Finish partition rewrites a killed process left half done (gallery/rewrite_journal.py)."""
        if self._journal is None:
            return
        for pending in self._journal.pending():
            log.warning(
                "gallery: finishing the rewrite of partition %s that a previous process left unfinished",
                pending.partition,
            )
            self._rewrite_partition(pending)

    def _load(self, collection: str) -> None:
        """Load a collection (the gallery's or its journal's) on opening. On embedded Milvus Lite, one
        that fails to load has its index files removed and is loaded again, which rebuilds them: a
        process killed while Lite wrote one left it half-written (gallery/lite_sidecars.py)."""

        def load() -> None:
            self._call(self._client.load_collection, collection)

        if self._lite_path is None:  # a server's files are the server's
            load()
        else:
            load_rebuilding_index(load, Path(self._lite_path), collection, GalleryUnavailable)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                try:
                    return fn(*args, **kwargs)
                except MilvusException as exc:
                    if exc.code != COLLECTION_NOT_LOADED:
                        raise
                    # A released collection (an operator rebuilding its index, a restarted server):
                    # load it, ask again. The wait is bounded: a 2.3 server reloads what was loaded
                    # by itself after a restart (~30 s), and the runner retries the batch meanwhile.
                    self._client.load_collection(self.collection, timeout=_LOAD_WAIT_S)
                    return fn(*args, **kwargs)
        except MilvusException as exc:
            raise GalleryUnavailable(f"Milvus call {getattr(fn, '__name__', fn)} failed: {exc}") from exc

    def add(self, entries: Sequence[GalleryEntry], vectors: npt.NDArray[np.float32]) -> None:
        """Store entries; one whose ids or identity no filter could name is refused (ConfigError), so
        no entry exists that cannot be searched, listed by identity, or purged."""
        if len(entries) != len(vectors):
            raise ValueError("one vector per entry")
        for e in entries:
            _quote(e.model_id, "model id")
            _quote(e.authorisation_id, "authorisation id")
            _quote(e.entry_id, "entry id")
            _quote_identity(e.identity)
        by_partition: dict[str, dict[str, dict[str, Any]]] = {}
        for e, v in zip(entries, vectors, strict=True):
            row = {**{f: getattr(e, f) for f in _ENTRY_FIELDS}, "vector": v.astype(np.float32).tolist()}
            # keyed by entry id: one photo given twice is one entry (the last one), as upsert made it
            by_partition.setdefault(partition_of(e.authorisation_id), {})[e.entry_id] = row
        with self._lock:
            for partition, keyed in by_partition.items():
                created = self._ensure_partition(partition)
                rows = list(keyed.values())
                for start in range(0, len(rows), _WRITE_ROWS):
                    self._write(partition, rows[start : start + _WRITE_ROWS], fresh=created)
            # Seal what was written: Milvus Lite searches unflushed (growing) rows some 25 times
            # slower (10k rows: ~590 ms a search against ~24 ms flushed; load-tests/bench.py).
            # Enrollment is rare, so its extra second is the cheap side.
            self._call(self._client.flush, self.collection)
            self._settle()

    def _write(self, partition: str, rows: list[dict[str, Any]], *, fresh: bool) -> None:
        """Insert the rows whose entry is new, upsert those already stored (the same photo enrolled
        again under the same authorisation and model keeps one entry).

        Not upsert for all: a 2.3 server writes a delete for every upserted id, stored or not, and
        compacts segments with deletes (rewrites them, then indexes them again). With inserts, 1M
        bulk-added rows were served on their index after 625 s against 800 s with upserts (two runs of
        the scale report's gallery part, not one: a hint, not a ratio); the server still re-indexes
        most rows once, for merging small segments. A new partition holds nothing, so it is not
        asked."""
        stored: set[str] = set()
        if not fresh:
            ids = [r["entry_id"] for r in rows]
            for start in range(0, len(ids), _LOOKUP_IDS):
                chunk = ", ".join(_quote(i, "entry id") for i in ids[start : start + _LOOKUP_IDS])
                found = self._call(
                    self._client.query,
                    self.collection,
                    filter=f"entry_id in [{chunk}]",
                    output_fields=["entry_id"],
                    partition_names=[partition],
                )
                stored.update(r["entry_id"] for r in found)
        new = [r for r in rows if r["entry_id"] not in stored]
        if new:
            self._call(self._client.insert, self.collection, new, partition_name=partition)
        if len(new) < len(rows):
            old = [r for r in rows if r["entry_id"] in stored]
            self._call(self._client.upsert, self.collection, old, partition_name=partition)

    def _settle(self) -> None:
        """Make this client's writes visible to every later search, whoever makes it.

        On a server the collection reads Bounded: searches just after a write answered without
        it (a deleted entry still matched, a new one did not; flush does not wait for the query
        node). A Strong read returns once the query node has applied everything up to now, and
        what it has applied stays applied, so later Bounded searches see the write too, while
        matching keeps its cheap reads. Milvus Lite answers from its own writes already."""
        if self.is_server:
            self._call(
                self._client.query,
                self.collection,
                filter="",
                output_fields=["count(*)"],
                consistency_level=_STRONG,
            )

    def _ensure_partition(self, partition: str) -> bool:
        """Create the partition if it is missing; True if it was (it holds nothing yet)."""
        if self._call(self._client.has_partition, self.collection, partition):
            return False
        self._call(self._client.create_partition, self.collection, partition)
        return True

    def search(
        self,
        vectors: npt.NDArray[np.float32],
        *,
        model_id: str,
        threshold: float,
        top_k: int,
        now_ms: int | None = None,
        authorisation_ids: Sequence[str] | None = None,
    ) -> list[list[GalleryHit]]:
        """Entries scoring at least `threshold`, best first, for each vector.

        Only entries of the same model, not expired, and (when given) under one of
        `authorisation_ids` can be returned: the filter runs inside Milvus. An id outside the
        filter alphabet is a ConfigError, before Milvus sees it; the matcher dead-letters such
        records first (stages/match.py), so only a configuration can raise it there.
        """
        if len(vectors) == 0:
            return []
        if authorisation_ids is not None and not authorisation_ids:
            return [[] for _ in vectors]
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        clauses = [f"model_id == {_quote(model_id, 'model id')}", f"valid_until_ms > {int(now_ms)}"]
        if authorisation_ids is not None:
            clauses.append(
                f"authorisation_id in [{', '.join(_quote(a, 'authorisation id') for a in authorisation_ids)}]"
            )
        results = self._call(
            self._client.search,
            self.collection,
            data=[v.astype(np.float32).tolist() for v in vectors],
            filter=" and ".join(clauses),
            limit=top_k,
            output_fields=["identity", "authorisation_id"],
            search_params=self._search_params(top_k),
        )
        out: list[list[GalleryHit]] = []
        for hits in results:
            row = [
                GalleryHit(
                    entry_id=str(h["entry_id"]) if "entry_id" in h else str(h["id"]),
                    identity=h["entity"]["identity"],
                    authorisation_id=h["entity"]["authorisation_id"],
                    score=float(h["distance"]),
                )
                for h in hits
                if float(h["distance"]) >= threshold
            ]
            out.append(sorted(row, key=lambda h: h.score, reverse=True))
        return out

    def _search_params(self, top_k: int) -> dict[str, Any]:
        """The index's search parameters. Without `ef`, Milvus searches HNSW with ef = top_k, which
        for the matcher's top_k of 3 misses the true nearest entry far too often."""
        if self.settings.index_type == "HNSW":
            return {"metric_type": "COSINE", "params": {"ef": max(self.settings.search_ef, top_k)}}
        if self.settings.index_type == "IVF_FLAT":
            return {"metric_type": "COSINE", "params": {"nprobe": self.settings.ivf_nprobe}}
        return {"metric_type": "COSINE"}

    def entries(self, filter_expr: str = "") -> list[GalleryEntry]:
        """Every entry the filter selects, all of them: purges and `gallery list` rely on it."""
        expr = filter_expr or 'entry_id != ""'
        rows = self._call(
            self._client.query,
            self.collection,
            filter=expr,
            output_fields=_ENTRY_FIELDS,
            limit=QUERY_LIMIT,
            consistency_level=_STRONG,
        )
        if len(rows) >= QUERY_LIMIT:
            # The limit may have cut the list (a server takes no larger one), so page through them
            # all. The iterator drops the consistency level, but the Strong query above has brought
            # the server up to now already.
            rows = self._call(self._all_rows, expr, _ENTRY_FIELDS)
        return sorted(
            (GalleryEntry(**{f: r[f] for f in _ENTRY_FIELDS}) for r in rows),
            key=lambda e: (e.identity, e.enrolled_at_ms, e.entry_id),
        )

    def _all_rows(
        self, expr: str, fields: Sequence[str], partition: str | None = None
    ) -> list[dict[str, Any]]:
        """Every row the filter selects, page by page (one query returns at most QUERY_LIMIT).
        A vector comes back as float32 (2 KiB a row at 512 dimensions, against ~16 KiB as the list
        of Python floats a page holds), so a partition of 100,000 entries fits in ~0.2 GiB."""
        pages = self._client.query_iterator(
            self.collection,
            batch_size=QUERY_LIMIT // 2,
            filter=expr,
            output_fields=list(fields),
            partition_names=[partition] if partition is not None else None,
        )
        rows: list[dict[str, Any]] = []
        try:
            while page := pages.next():
                for row in page:
                    if "vector" in row:
                        row["vector"] = np.asarray(row["vector"], dtype=np.float32)
                    rows.append(dict(row))
        finally:
            pages.close()
        return rows

    def entries_of(self, identity: str) -> list[GalleryEntry]:
        return self.entries(f"identity == {_quote_identity(identity)}")

    def entries_of_authorisation(self, authorisation_id: str) -> list[GalleryEntry]:
        return self.entries(f"authorisation_id == {_quote(authorisation_id, 'authorisation id')}")

    def entries_with_ids(self, entry_ids: Sequence[str]) -> list[GalleryEntry]:
        """Those of the entries that exist."""
        if not entry_ids:
            return []
        return self.entries(f"entry_id in [{', '.join(_quote(i, 'entry id') for i in entry_ids)}]")

    def expired(self, now_ms: int) -> list[GalleryEntry]:
        """Entries whose own validity has ended (their authorisation's end, stamped at enrollment)."""
        return self.entries(f"valid_until_ms <= {int(now_ms)}")

    def remove_identity(self, identity: str) -> int:
        gone = self.entries_of(identity)
        self.remove_entries([e.entry_id for e in gone])
        return len(gone)

    def remove_entries(self, entry_ids: Sequence[str]) -> list[GalleryEntry]:
        """Erase entries, vectors included (see the module docstring); returns those that existed.

        On Milvus Lite each partition they are in is rewritten without them. The rows it keeps are
        written to the rewrite journal before anything is deleted, so from then on the erasure
        finishes even if this process dies: here, or when the gallery is next opened."""
        if not entry_ids:
            return []
        with self._lock:
            gone = self.entries_with_ids(entry_ids)
            partitions = sorted({partition_of(e.authorisation_id) for e in gone})
            rewrites = [self._keep_all_but(partition, set(entry_ids)) for partition in partitions]
            self._call(self._client.delete, self.collection, ids=list(entry_ids))
            if not self.is_lite:
                self._call(self._client.compact, self.collection)
            for pending in rewrites:
                if pending is not None:
                    self._rewrite_partition(pending)
            self._settle()
        return gone

    def remove_authorisation(self, authorisation_id: str) -> int:
        """Erase every entry of an authorisation by dropping its partition; returns how many."""
        partition = partition_of(authorisation_id)
        with self._lock:
            count = len(self.entries_of_authorisation(authorisation_id))
            if self._call(self._client.has_partition, self.collection, partition):
                self._drop_partition(partition)
            # Entries written before partitions existed sit in _default: delete those too.
            self._call(
                self._client.delete,
                self.collection,
                filter=f"authorisation_id == {_quote(authorisation_id, 'authorisation id')}",
            )
            self._settle()
        return count

    def _drop_partition(self, partition: str) -> None:
        if not self.is_lite:
            # A Milvus server drops only released partitions. Milvus Lite has no partition release,
            # embedded or as `milvus-lite server` (which answers UNIMPLEMENTED): it drops at once.
            self._call(self._client.release_partitions, self.collection, [partition])
        self._call(self._client.drop_partition, self.collection, partition)
        if not self.is_lite:
            self._call(self._client.load_collection, self.collection)

    def _keep_all_but(self, partition: str, removed: set[str]) -> PendingRewrite | None:
        """On Milvus Lite, journal the partition's rows other than `removed` (None on a Milvus server,
        which compacts instead, or when the partition does not exist). Rows are read page by page into
        memory (`_all_rows`), so a partition of any size is rewritten."""
        if self._journal is None or not self._call(self._client.has_partition, self.collection, partition):
            return None
        rows = self._call(self._all_rows, 'entry_id != ""', [*_ENTRY_FIELDS, "vector"], partition)
        # keyed by entry id: a row stored twice (two processes finishing one rewrite) is kept once
        kept = list({r["entry_id"]: r for r in rows if r["entry_id"] not in removed}.values())
        return self._journal.keep(partition, kept)

    def _rewrite_partition(self, pending: PendingRewrite) -> None:
        """Drop the partition, insert the journalled rows into a new one, flush, forget the journal.
        Run again after a crash at any point, it ends in the same state."""
        assert self._journal is not None, "only Milvus Lite rewrites partitions"
        rows = self._journal.rows(pending)
        if self._call(self._client.has_partition, self.collection, pending.partition):
            self._drop_partition(pending.partition)
        self._call(self._client.create_partition, self.collection, pending.partition)
        for start in range(0, len(rows), _WRITE_ROWS):  # a new partition: insert (see `_write`)
            chunk = rows[start : start + _WRITE_ROWS]
            self._call(self._client.insert, self.collection, chunk, partition_name=pending.partition)
        self._call(self._client.flush, self.collection)
        self._journal.done(pending)

    def count(self) -> int:
        """Entries in the gallery. Not the collection statistics: on a 2.3 server their row_count
        still counted deleted rows, before and after a compaction."""
        counted = self._call(
            self._client.query,
            self.collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level=_STRONG,
        )
        return int(counted[0]["count(*)"])

    def close(self) -> None:
        """Close the client and, with Milvus Lite, give the directory back once no Gallery in this
        process uses it (pymilvus keeps the in-process server, and its lock, until exit)."""
        if self._closed:
            return
        self._closed = True
        self._client.close()
        if self._lite_path is not None:
            _release_lite(self._lite_path)


_LITE_USERS: dict[str, int] = {}
_LITE_LOCK = threading.Lock()


def _hold_lite(path: Path) -> str:
    key = os.path.abspath(path)  # the key milvus_lite's server manager uses
    with _LITE_LOCK:
        _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
    return key


def _release_lite(key: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[key] -= 1
        if _LITE_USERS[key] > 0:
            return
        del _LITE_USERS[key]
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - milvus-lite is a dependency
        return
    server_manager_instance.release_server(key)


def identity_problem(identity: str) -> str | None:
    """Why an identity cannot be written into a gallery filter, or None when it can.

    Identities are free text chosen by officers (any script), so they get no alphabet; what is
    refused is what would end or change the literal: a double quote, a backslash (each backend
    reads escapes its own way) and control, format or line-separator characters (a raw newline
    ends the literal on both); and more than the column holds, in bytes (found on the 2.3 server:
    an enrollment of 100 Bengali signs failed there as "Milvus call upsert failed")."""
    bad = {c for c in identity if c in '"\\' or unicodedata.category(c)[0] == "C" or c in "\u2028\u2029"}
    if bad:
        return f"a quote, backslash or control character ({shown(''.join(sorted(bad)), 20)})"
    size = len(identity.encode())
    if size > MAX_IDENTITY_BYTES:
        return f"{size} bytes in UTF-8, over the {MAX_IDENTITY_BYTES} an identity may have"
    return None


def _quote_identity(identity: str) -> str:
    problem = identity_problem(identity)
    if problem is not None:
        raise ConfigError(f"identity {shown(identity)} cannot be used in a gallery filter: {problem}")
    return f'"{identity}"'
