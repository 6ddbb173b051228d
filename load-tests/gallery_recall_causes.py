"""Why a first HNSW try on the Milvus server found only ~77% of near-duplicates at 100k rows.

    .venv/bin/python load-tests/gallery_recall_causes.py [--rows 100000]

Fills a server collection with the product's default HNSW build (M=16, efConstruction=200) through
`Gallery.add`, as the scale report's gallery part does (load-tests/scalelab/gallery.py), and checks
each candidate cause in turn, printing a table of recall@1 against exact search:

1. searching before the index is served: right after `Gallery.add` returns, the new rows sit in
   growing segments, searched through the server's interim IVF index (nlist 128, nprobe 16);
2. ef = top_k: a search without `ef` (what Gallery sent before `search_ef` existed) is compared,
   answer for answer, with one at ef = top_k, and recall is taken at increasing ef;
3. ef is sticky: a loaded HNSW segment is searched with the largest ef any search has asked of it,
   until the collection is released and loaded again (so each ef comparison starts from a reload);
4. segments under the 1,024-row minimum for indexing: a small add is never indexed, and is
   searched by brute force.

Raw pymilvus calls are used for the index state, reloads and the search without `ef` (which
Gallery can no longer send); every other figure goes through `Gallery.search` with the matcher's
filter. Takes about 3 minutes on 2 quiet cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from scalelab.gallery import (  # noqa: E402
    MODEL,
    SCOPE,
    Rows,
    exact_top1,
    genuine_queries,
    index_state,
    insert,
    milvus_server,
    wait_served,
)


def near_duplicates(rng: np.random.Generator, rows: Rows, lo: int, hi: int, n: int) -> tuple[Any, Any]:
    """Like genuine queries, at cosine 0.90-0.98 to the enrolled vector (a second photo of one sitting)."""
    q, mates = genuine_queries(rng, rows, lo, hi, n)
    base = rows.vectors[mates]
    noise = q - (q * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = rng.uniform(0.90, 0.98, size=(len(mates), 1)).astype(np.float32)
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32), mates


def recall(gallery: Any, queries: Any, exact: Any, now_ms: int, top_k: int = 3) -> float:
    got = []
    for start in range(0, len(queries), 32):
        hits = gallery.search(
            queries[start : start + 32],
            model_id=MODEL,
            threshold=-1.0,
            top_k=top_k,
            now_ms=now_ms,
            authorisation_ids=SCOPE,
        )
        got += [int(h[0].entry_id[1:]) if h else -1 for h in hits]
    return round(float(np.mean(np.asarray(got) == exact)), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=512)
    args = parser.parse_args(argv)
    from pymilvus import MilvusClient

    from facestream.gallery.store import Gallery
    from facestream.settings import GallerySettings

    n = args.rows
    small = 800  # 100 rows in each of 8 partitions: segments under the 1,024-row minimum
    rows = Rows.make(n + small, now_ms=int(time.time() * 1000))
    rng = np.random.default_rng(7)
    out: list[tuple[str, str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, milvus_server(Path(tmp) / "milvus") as server:
        client = MilvusClient(uri=server.uri)

        def gallery(ef: int) -> Gallery:
            return Gallery(
                GallerySettings(gallery=server.uri, collection="causes", index_type="HNSW", search_ef=ef)
            )

        def both(g: Gallery) -> tuple[float, float]:
            return recall(g, genuine, g_exact, rows.now_ms), recall(g, near, n_exact, rows.now_ms)

        def reload() -> None:
            client.release_collection("causes")
            client.load_collection("causes")
            wait_served(client, "causes", n, server.pid)

        main = gallery(64)
        try:
            print(insert(main, rows, 0, n, "insert"), file=sys.stderr)
            added = time.monotonic()
            genuine, _ = genuine_queries(rng, rows, 0, n, args.queries)
            near, _ = near_duplicates(rng, rows, 0, n, args.queries)
            g_exact, n_exact = exact_top1(genuine, rows, n), exact_top1(near, rows, n)
            state = index_state(client, "causes")
            figures = both(main)
            out.append(
                (
                    "1. just after add, ef 64",
                    f"{time.monotonic() - added:.0f} s after add; "
                    f"{state['sealed_rows_served']:,} of {n:,} rows served sealed",
                    figures,
                )
            )
            waited = wait_served(client, "causes", n, server.pid, since=added)
            out.append(
                (
                    "index served",
                    f"indexed after {waited['indexed_after_s']} s, served after "
                    f"{waited['served_after_s']} s (wall)",
                    None,
                )
            )
            # 2. no ef at all, then ef = top_k, each on freshly loaded segments
            filt = f'model_id == "{MODEL}" and valid_until_ms > {rows.now_ms} and authorisation_id in [' + (
                ", ".join(f'"{a}"' for a in SCOPE) + "]"
            )
            answers: dict[str, list[list[str]]] = {}
            for label, params in (("no ef", {}), ("ef 3", {"ef": 3}), ("ef 16", {"ef": 16})):
                reload()
                answers[label] = []
                for start in range(0, len(genuine), 32):
                    res = client.search(
                        "causes",
                        data=genuine[start : start + 32].tolist(),
                        filter=filt,
                        limit=3,
                        search_params={"metric_type": "COSINE", "params": params},
                    )
                    answers[label] += [[h["id"] for h in r] for r in res]
            for other in ("ef 3", "ef 16"):
                same = sum(a == b for a, b in zip(answers["no ef"], answers[other], strict=True))
                out.append(
                    (
                        f"2. no ef given (top_k 3) against {other}",
                        f"{same}/{len(genuine)} answers identical, fresh load each",
                        None,
                    )
                )
            reload()
            for ef in (3, 16, 64, 128, 256):
                g = gallery(ef)
                out.append((f"2. served, ef {ef}", "climbing from a fresh load", both(g)))
                g.close()
            # 3. sticky: ef 3 again, after ef 256
            g = gallery(3)
            out.append(("3. ef 3 again, after ef 256", "no reload", both(g)))
            reload()
            out.append(("3. ef 3 again, after a reload", "release + load", both(g)))
            g.close()
            # 4. a small add: segments under the minimum stay unindexed, searched by brute force
            print(insert(main, rows, n, n + small, "small add"), file=sys.stderr)
            time.sleep(20)  # past the hand-over
            state = index_state(client, "causes")
            q, _ = genuine_queries(rng, rows, n, n + small, 256)
            exact = exact_top1(q, rows, n + small)
            out.append(
                (
                    f"4. {small} rows added in 8 partitions",
                    f"{state['unindexed_small_segments']} segments "
                    f"under 1,024 rows; describe_index says {state['indexed_rows']:,} of "
                    f"{state['total_rows']:,} indexed",
                    (recall(main, q, exact, rows.now_ms), None),
                )
            )
        finally:
            main.close()
            client.close()
    print(
        f"\nrecall@1 against exact search, {args.queries} queries each, HNSW M=16 efConstruction=200, "
        f"{n:,} rows, 8 partitions"
    )
    print("| state | note | genuine (cos 0.6-0.8) | near-duplicate (cos 0.90-0.98) |")
    print("| --- | --- | --- | --- |")
    for what, note, figures in out:
        g, d = figures if figures else ("", "")
        print(f"| {what} | {note} | {'' if g is None else g} | {'' if d is None else d} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
