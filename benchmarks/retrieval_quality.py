"""Retrieval quality on the shared data (``python -m benchmarks.retrieval_quality``): does search rank the
candidate people judged closer above the farther one?

The shared triplets are split by images (``ctxsim data split``: held-out rows name only held-out images),
a small run (4 members + LightGBM stacker) is trained on the fit rows, and every image (fit and held out)
is indexed twice: with that run and with the zero-shot backbone. For each held-out triplet (R, A, B) the
query R is searched over the whole catalogue and the triplet counts as right when the human-closer
candidate is ranked above the other (both are always in the index). Systems, in one run:

* ``zero-shot retrieval``: ``backbone:efficientnet_lite0``, cosine order;
* ``context retrieval``: the run's context + global members, best cosine order (``rerank=0``);
* ``ensemble re-ranked``: the same candidates, the top ``--rerank`` re-ranked pairwise by the ensemble
  (and every retrieved candidate re-ranked).

Writes ``benchmarks/results/retrieval_quality.json``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import FAST_TRAIN, base_parser, machine, pool, save, setup_env, table

ZERO_SHOT = "backbone:efficientnet_lite0"
HOLDOUT = 0.4  # a large share: held-out rows need all three images held out


def split_and_train(work: Path, csvs: list[Path], holdout: float, seed: int) -> tuple[Path, Path]:
    from ctxsim.data.splits import split_files

    folder = work / "retrieval"
    fit, held, run = folder / "fit.csv", folder / "heldout.csv", folder / f"run-holdout{holdout}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    if not held.exists():
        split_files(csvs, None, fit, held, holdout, seed)
    if not (run / "run.json").exists():
        print(f"training a 4-member run on the fit rows into {run} (once; a few minutes)", file=sys.stderr)
        args = [sys.executable, "-m", "ctxsim.cli", "train", "--no-track", "--triplets", str(fit), "--out", str(run)]
        for kv in FAST_TRAIN:
            args += ["--set", kv]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return held, run


def wilson(k: int, n: int) -> tuple[float, float]:
    from ctxsim.metrics import wilson_interval

    return wilson_interval(k, n) if n else (float("nan"), float("nan"))


def evaluate(comparator, index: Path, heldout, rerank: int) -> dict:
    """Pairwise order accuracy of search over every held-out triplet (one search per reference)."""
    right = total = 0
    seconds = []
    for ref, rows in heldout.group_by("_ref_path", maintain_order=True):
        start = time.perf_counter()
        found = comparator.search(ref[0], k=10_000, index=index, rerank=rerank)
        seconds.append(time.perf_counter() - start)
        rank = dict(zip(map(os.path.realpath, found["path"].to_list()), found["rank"].to_list()))
        for a, b, label in rows.select("_a_path", "_b_path", "label").iter_rows():
            closer, farther = (os.path.realpath(a), os.path.realpath(b)) if label == "A" else (os.path.realpath(b), os.path.realpath(a))
            if closer in rank and farther in rank:
                total += 1
                right += rank[closer] < rank[farther]
    low, high = wilson(right, total)
    return {"triplets": total, "right": right, "accuracy": round(right / total, 4) if total else None,
            "ci_low": round(low, 4), "ci_high": round(high, 4), "queries": len(seconds),
            "query_s_median": round(sorted(seconds)[len(seconds) // 2], 3) if seconds else None}


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--holdout", type=float, default=HOLDOUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rerank", type=int, default=50)
    args = parser.parse_args(argv)
    setup_env(args.work)

    import polars as pl

    from ctxsim.compare.model_uri import load_comparator
    from ctxsim.data.triplets import read_triplets
    from ctxsim.retrieval.index import build_index

    images, csvs = pool(args.work)
    held_csv, run = split_and_train(args.work, csvs, args.holdout, args.seed)
    heldout = read_triplets(held_csv).filter(pl.col("label").is_not_null())
    catalogue = args.work / "data"  # every image of both data sets
    results, builds = [], {}
    systems = [("zero-shot retrieval", ZERO_SHOT, 0), ("context retrieval", str(run), 0),
               (f"ensemble re-ranked (top {args.rerank})", str(run), args.rerank),
               ("ensemble re-ranked (every candidate)", str(run), len(images))]
    for name, model, rerank in systems:
        comparator = load_comparator(model, progress=False)
        index = args.work / "retrieval" / f"index-{'zeroshot' if model == ZERO_SHOT else run.name}"
        if model not in builds:
            start = time.perf_counter()
            built = build_index(comparator, catalogue, index, model=model, progress=False)
            builds[model] = {"images": built.images, "added": built.added, "seconds": round(time.perf_counter() - start, 2)}
        row = {"system": name, "model": model if model == ZERO_SHOT else run.name, "rerank": rerank,
               **evaluate(comparator, index, heldout, rerank)}
        results.append(row)
        print(row, file=sys.stderr)
    # the same held-out triplets scored directly by the ensemble (compare): what a ranking could at best agree with
    scored = load_comparator(str(run), progress=False).score(heldout.select("ref", "a", "b", "label", "_ref_path", "_a_path", "_b_path")
                                                              .with_columns(pl.col("_ref_path").alias("ref"), pl.col("_a_path").alias("a"),
                                                                            pl.col("_b_path").alias("b")))
    right = int(scored["correct"].sum())
    low, high = wilson(right, scored.height)
    results.append({"system": "ensemble on the triplets (compare, no retrieval)", "model": run.name, "rerank": None,
                    "triplets": scored.height, "right": right, "accuracy": round(right / scored.height, 4),
                    "ci_low": round(low, 4), "ci_high": round(high, 4), "queries": None, "query_s_median": None})
    base = results[0]["accuracy"]
    for row in results:
        row["vs_zero_shot"] = round(row["accuracy"] - base, 4) if row["accuracy"] is not None and base is not None else None
    table(results, ["system", "triplets", "accuracy", "ci_low", "ci_high", "vs_zero_shot", "query_s_median"],
          title=f"held-out triplets ranked in the human order by search over {len(images)} images")
    result = {"benchmark": "retrieval_quality", "machine": machine(), "holdout": args.holdout, "seed": args.seed,
              "heldout_triplets": heldout.height, "catalogue_images": len(images), "builds": builds, "results": results,
              "note": "pairwise order accuracy: share of held-out triplets whose human-closer candidate search ranks above the "
                      "farther one, over the whole catalogue; the run never saw a held-out image"}
    save("retrieval_quality", result)
    return result


if __name__ == "__main__":
    main()
