"""Catalogue index at scale (``python -m benchmarks.index_scale``): adding images and query latency at
10k and 100k synthetic images, the embedded default (Milvus Lite, FLAT: exact inner product) against
exact brute force in numpy (one matrix-vector product) measured in the same run.

Vectors are synthetic, normalised, of EfficientNet-Lite0's dimension (1280); one member's collection
(an index of M members holds M such collections: build time grows M-fold, a query searches 1-3 of them).
Queries: ``--queries`` random catalogue vectors, top-50, one at a time (p50 / p99 latency). Also checks
that Milvus Lite returns the exact top-50 (recall against numpy).

Writes ``benchmarks/results/index_scale.json``.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from benchmarks.common import base_parser, machine, save, setup_env, table

SIZES = [10_000, 100_000]
DIM = 1280
TOP = 50


def build(store, n: int, vecs: np.ndarray, batch: int = 2_000) -> float:
    ids = [f"{i:064x}" for i in range(n)]
    paths = [f"/catalogue/{i:07d}.jpg" for i in range(n)]
    store.create("bench", vecs.shape[1])
    start = time.perf_counter()
    for s in range(0, n, batch):
        store.upsert("bench", ids[s : s + batch], vecs[s : s + batch], paths[s : s + batch])
    return time.perf_counter() - start


def latencies(store, queries: np.ndarray) -> tuple[list[float], list[list[str]]]:
    store.search("bench", queries[:1], TOP)  # load / warm
    out, hits = [], []
    for q in queries:
        start = time.perf_counter()
        found = store.search("bench", q[None], TOP)[0]
        out.append(time.perf_counter() - start)
        hits.append([h[0] for h in found])
    return out, hits


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=DIM)
    args = parser.parse_args(argv)
    setup_env(args.work)

    from ctxsim.embedding.distances import l2_normalize
    from ctxsim.retrieval.store import ExactStore, MilvusStore

    rows = []
    rng = np.random.default_rng(0)
    for n in args.sizes:
        vecs = l2_normalize(rng.standard_normal((n, args.dim), dtype=np.float32))
        queries = vecs[rng.choice(n, args.queries, replace=False)] + 0.05 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        with tempfile.TemporaryDirectory(dir=args.work) as folder:
            results = {}
            for name, store in (("numpy exact", ExactStore()), ("milvus lite", MilvusStore(os.path.join(folder, "bench.db")))):
                build_s = build(store, n, vecs)
                lat, hits = latencies(store, queries)
                results[name] = hits
                rows.append({"store": name, "images": n, "build_s": round(build_s, 2), "images_per_s": round(n / build_s),
                             "p50_ms": round(1000 * float(np.percentile(lat, 50)), 2), "p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
                             "load": [round(x, 2) for x in os.getloadavg()]})
                store.close()
                print(rows[-1], flush=True)
            recall = np.mean([len(set(m) & set(e)) / TOP for m, e in zip(results["milvus lite"], results["numpy exact"])])
            for r in rows[-2:]:
                r["recall_at_50_vs_exact"] = round(float(recall), 4)
    for r in rows:
        base = next(x for x in rows if x["images"] == r["images"] and x["store"] == "numpy exact")
        r["p50_vs_numpy"] = round(r["p50_ms"] / base["p50_ms"], 2)
        r["build_vs_numpy"] = round(r["build_s"] / base["build_s"], 2)
    table(rows, ["store", "images", "build_s", "images_per_s", "p50_ms", "p99_ms", "p50_vs_numpy", "recall_at_50_vs_exact"],
          title=f"catalogue index: one member's collection, dim {args.dim}, top-{TOP}")
    result = {"benchmark": "index_scale", "machine": machine(), "dim": args.dim, "top": TOP, "rows": rows,
              "note": "build = upserting synthetic vectors (embedding not included); one query at a time"}
    save("index_scale", result)
    return result


if __name__ == "__main__":
    main()
