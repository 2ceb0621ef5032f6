"""Peak memory of ``ctxsim compare`` as rows grow: 1M and 5M rows (``python -m benchmarks.memory``).

Runs ``ctxsim compare`` on the trained run as a subprocess (warm embedding cache) and polls the resident
memory of it and its children with psutil. Streaming (chunked read, chunk-by-chunk scoring and writing)
should keep the peak flat: the target is at most 20% more at 5M rows than at 1M rows.
"""
from __future__ import annotations

import os
import sys

from benchmarks.common import base_parser, machine, peak_rss, pool, rows_csv, save, setup_env, table, trained_run

SIZES = [1_000_000, 5_000_000]
TARGET_GROWTH = 1.2


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--members", type=int, default=8, choices=[4, 8])
    args = parser.parse_args(argv)
    setup_env(args.work)

    images, _ = pool(args.work)
    run = trained_run(args.work, args.members)
    env = dict(os.environ)
    rows = []
    warm = [sys.executable, "-m", "ctxsim.cli", "compare", str(run), str(rows_csv(args.work, 1_000, images)),
            "--out", str(args.work / "out" / "warm.csv")]
    peak_rss(warm, env=env)  # embeds the pool and compiles the stacker into the cache
    for n in args.sizes:
        csv = rows_csv(args.work, n, images)
        cmd = [sys.executable, "-m", "ctxsim.cli", "compare", str(run), str(csv), "--out", str(args.work / "out" / f"memory-{n}.csv")]
        peak, seconds, anon = peak_rss(cmd, env=env)
        rows.append({"rows": n, "csv_mb": round(csv.stat().st_size / 2**20), "peak_rss_mb": round(peak / 2**20),
                     "peak_anon_mb": round(anon / 2**20),
                     "seconds": round(seconds, 1), "rows_per_s": round(n / seconds)})
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    for r in rows:
        r["ratio_to_first"] = round(r["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3)
    result = {"benchmark": "memory", "machine": machine(), "members": args.members, "rows": rows,
              "note": "peak RSS of the `ctxsim compare` process tree (psutil, polled every 20 ms), warm embedding cache; "
                      "peak_anon_mb: anonymous memory only (RSS also counts pages of the memory-mapped input CSV); "
                      "wall seconds include Python start-up and model loading",
              "target": {"growth_at_most": TARGET_GROWTH, "growth": round(growth, 3), "met": growth <= TARGET_GROWTH}}
    table(rows, ["rows", "csv_mb", "peak_rss_mb", "ratio_to_first", "peak_anon_mb", "seconds", "rows_per_s"],
          title="Peak memory of ctxsim compare")
    save("memory", result)
    return result


if __name__ == "__main__":
    main()
