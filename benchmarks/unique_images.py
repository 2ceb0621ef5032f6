"""Scoring rows/s as the number of unique images grows: 170, 1k, 10k, 100k images with synthetic
embeddings, 8 members + the LightGBM stacker (``python -m benchmarks.unique_images``).

The trained 8-member run (benchmarks.common.trained_run) is loaded; its image index is filled with
synthetic normalised embeddings (the backbone's dimension, every member) and soft context memberships
for N fake paths, so nothing is decoded or embedded: what is timed is ``comparator.predict`` on chunks
of 100k rows (image codes, margins of 8 members, ensemble inputs, stacker, output columns). Also the
margins step alone, and baselines in the same run: the packed kernel on exact float32 embeddings (what
float16 storage buys), and margins the way they were computed before packed embeddings (distance tables up
to 4096 images, per-row gathered dot products past that). Also the embedding cache (SQLite):
``put_many`` / ``get_many`` of 10^5 (and ``--cache-images``) vectors.

Writes ``benchmarks/results/unique_images.json``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.common import base_parser, machine, save, setup_env, table, trained_run

IMAGES = [170, 1_000, 10_000, 100_000]
ROWS = 300_000
CHUNK = 100_000
TARGET_ROWS_PER_S = 150_000


def legacy_margins(emb, ref, a, b, table=None):
    """Margins as computed before packed embeddings: a table lookup, else gathers of every row at once."""
    if table is not None:
        return table[ref, b] - table[ref, a]
    r = emb[ref]
    return np.einsum("nd,nd->n", r, emb[a]) - np.einsum("nd,nd->n", r, emb[b])


def fill(comparator, n: int, seed: int = 0) -> list[str]:
    """Put ``n`` synthetic images into the comparator's index: every member's embedding and a membership."""
    from ctxsim.compare.image_index import ImageIndex
    from ctxsim.embedding.distances import l2_normalize

    rng = np.random.default_rng(seed)
    dim = comparator.members.backbone.feature_dim
    paths = [f"/synthetic/{i:07d}.jpg" for i in range(n)]
    base = l2_normalize(rng.standard_normal((n, dim), dtype=np.float32))
    comparator._index = ImageIndex(paths)
    comparator._data = {m: l2_normalize(base + 0.3 * rng.standard_normal((n, dim), dtype=np.float32)) for m in comparator.member_names}
    k = len(comparator.contexts.names)
    logits = rng.standard_normal((n, k)).astype(np.float32)
    comparator._data["_membership"] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    comparator._data["_centroid_similarity"] = rng.uniform(0.2, 0.9, (n, k)).astype(np.float32)
    if comparator.known is not None:  # none of the synthetic images was seen in training
        comparator._data["_seen"] = np.zeros(n, np.float32)
    comparator._tables.clear()
    comparator._packed = None
    return paths


def chunks(paths: list[str], rows: int, seed: int = 1):
    """Triplet chunks in the columns ``predict`` reads (resolved paths), ~10 rows per reference."""
    import polars as pl

    from ctxsim.schema import PATH

    rng = np.random.default_rng(seed)
    names = np.asarray(paths)
    n = len(paths)
    out = []
    for start in range(0, rows, CHUNK):
        m = min(CHUNK, rows - start)
        ref = rng.integers(0, n, m)
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        out.append(pl.DataFrame({PATH["ref"]: names[ref], PATH["a"]: names[a], PATH["b"]: names[b]}))
    return out


def time_predict(comparator, parts) -> float:
    comparator.predict(parts[0])  # tables / packed matrix / compiled stacker (a chunk this large): built once, not timed
    start = time.perf_counter()
    for part in parts:
        comparator.predict(part)
    return time.perf_counter() - start


def time_margins(comparator, parts, mode: str) -> float:
    """Seconds for the margins of ``parts``: ``now`` (what predict does), ``float32`` (the packed kernel on
    exact float32 embeddings) or ``legacy`` (the code before packed embeddings, on float32)."""
    from ctxsim.embedding import distances
    from ctxsim.embedding.packed import PackedEmbeddings

    codes = [comparator.triplet_codes(p).T for p in parts]
    large = len(comparator._index) > distances.MAX_TABLE_IMAGES
    embs = {m: np.asarray(comparator._data[m], np.float32) for m in comparator.member_names} if mode != "now" else {}
    packed = PackedEmbeddings(list(embs.values()), dtype=np.float32) if mode == "float32" and large else None
    tables = {m: distances.cosine_distance_table(e) for m, e in embs.items()} if mode == "legacy" and not large else {}
    if mode == "now":
        comparator.member_margins(parts[0].head(1000))
    start = time.perf_counter()
    for ref, a, b in codes:
        if mode == "legacy":
            for m, e in embs.items():
                legacy_margins(e, ref, a, b, tables.get(m))
        elif packed is not None:
            packed.margins(ref, a, b)
        elif mode == "now" and large:
            comparator._packed_embeddings().margins(ref, a, b)
        else:
            for m in comparator.member_names:
                distances.margins(comparator._data[m], ref, a, b, comparator._table(m))
    return time.perf_counter() - start


def cache_bench(n: int, dim: int) -> dict:
    import tempfile

    from ctxsim.embedding.cache import EmbeddingCache

    rng = np.random.default_rng(0)
    digests = [f"{i:064x}" for i in range(n)]
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        vecs = rng.standard_normal((n, dim), dtype=np.float32)
        start = time.perf_counter()
        for s in range(0, n, 10_000):
            cache.put_many("bench", dict(zip(digests[s : s + 10_000], vecs[s : s + 10_000])))
        put = time.perf_counter() - start
        order = rng.permutation(n)
        start = time.perf_counter()
        got = cache.get_many("bench", [digests[i] for i in order])
        get = time.perf_counter() - start
        assert len(got) == n
        cache.close()
    return {"images": n, "dim": dim, "put_s": round(put, 2), "put_per_s": round(n / put), "get_s": round(get, 2), "get_per_s": round(n / get)}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=IMAGES)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--legacy-rows", type=int, default=50_000, help="rows for the old per-row path past 4096 images (slow)")
    parser.add_argument("--cache-images", type=int, nargs="+", default=[100_000])
    args = parser.parse_args(argv)
    setup_env(args.work)

    from ctxsim.compare.model_uri import load_comparator
    from ctxsim.embedding import distances

    comparator = load_comparator(str(trained_run(args.work, 8)), progress=False)
    load = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for n in args.images:
        paths = fill(comparator, n)
        parts = chunks(paths, args.rows)
        predict_s = time_predict(comparator, parts)
        new_margins_s = time_margins(comparator, parts, "now")
        float32_s = time_margins(comparator, parts, "float32")
        legacy_parts = parts if n <= distances.MAX_TABLE_IMAGES else chunks(paths, args.legacy_rows)
        legacy_s = time_margins(comparator, legacy_parts, "legacy")
        legacy_rows = sum(p.height for p in legacy_parts)
        row = {"images": n, "rows": args.rows, "predict_s": round(predict_s, 2), "rows_per_s": round(args.rows / predict_s),
               "margins_rows_per_s": round(args.rows / new_margins_s), "margins_float32_rows_per_s": round(args.rows / float32_s),
               "legacy_margins_rows_per_s": round(legacy_rows / legacy_s),
               "margins_speedup": round((args.rows / new_margins_s) / (legacy_rows / legacy_s), 2),
               "path": "tables" if n <= distances.MAX_TABLE_IMAGES else "packed", "load": [round(x, 2) for x in os.getloadavg()]}
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["rows_per_s"]
    for r in rows:
        r["vs_170"] = round(r["rows_per_s"] / base, 3)
    table(rows, ["images", "path", "rows_per_s", "vs_170", "margins_rows_per_s", "margins_float32_rows_per_s", "legacy_margins_rows_per_s",
                 "margins_speedup"],
          title=f"predict rows/s vs unique images: {len(comparator.member_names)} members + stacker (target >= {TARGET_ROWS_PER_S:,} at 100k)")
    cache_rows = [cache_bench(n, comparator.members.backbone.feature_dim) for n in args.cache_images]
    table(cache_rows, ["images", "dim", "put_s", "put_per_s", "get_s", "get_per_s"], title="embedding cache (SQLite), batched")
    result = {"benchmark": "unique_images", "machine": machine(), "load_average_before_points": load,
              "members": comparator.member_names, "dim": comparator.members.backbone.feature_dim, "rows": rows, "cache": cache_rows,
              "note": "in-process comparator.predict on 100k-row chunks of synthetic embeddings (no decoding, no CSV); "
                      "legacy = the margins code before packed embeddings, measured in the same run"}
    save("unique_images", result)
    return result


if __name__ == "__main__":
    main()
