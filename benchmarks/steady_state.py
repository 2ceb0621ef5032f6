"""Steady-state ``compare`` rows/s once images are embedded: 8 members + the LightGBM stacker
(``python -m benchmarks.steady_state``).

A comparator of the trained 8-member run is warmed (images embedded, stacker compiled), then
``compare_files`` scores ``--rows`` rows (validation and CSV writing included), best of ``--repeat``.
Also reported, measured in the same run: where the time goes (stage by stage), the stacker alone with
LightGBM's own ``predict`` against the compiled trees (identical predictions checked), and a floor:
read the CSV, look up 8 margins in the distance tables and write the result, with no model at all.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import (
    base_parser,
    machine,
    pool,
    rows_csv,
    save,
    setup_env,
    table,
    trained_run,
)

TARGET_ROWS_PER_S = 300_000


def stages(comparator, csv, out) -> dict[str, float]:
    """Seconds per stage of one compare of ``csv`` (the same work as compare_files, timed piece by piece)."""
    from ctxsim.compare.scoring import conform, output_columns
    from ctxsim.data.triplets import iter_triplet_chunks, validate

    t: dict[str, float] = {}

    def tick(name, start):
        t[name] = t.get(name, 0.0) + time.perf_counter() - start

    start = time.perf_counter()
    validate(csv)
    tick("validate", start)
    columns = output_columns(csv, None, comparator, False)
    with open(out, "wb") as sink:
        start = time.perf_counter()
        for chunk in iter_triplet_chunks(csv):
            tick("read CSV", start)
            s = time.perf_counter()
            margins, codes = comparator.member_margins(chunk)
            tick("image codes + margins", s)
            s = time.perf_counter()
            x = comparator._inputs(margins, codes, chunk, False)
            tick("ensemble inputs (membership, context)", s)
            s = time.perf_counter()
            comparator.ensemble.predict(x)
            tick("stacker: features + 2 compiled passes (A/B symmetry), in blocks", s)
            s = time.perf_counter()
            scored = comparator.predict(chunk)  # everything again, to time what predict adds around it
            tick("predict (all of the above + output columns)", s)
            s = time.perf_counter()
            conform(scored, columns).write_csv(sink, include_header=sink.tell() == 0)
            tick("write CSV", s)
            start = time.perf_counter()
    return t


def floor(comparator, csv, out) -> float:
    """Read, look up every member's margins in its distance table, write: no model, no stacker."""
    import polars as pl

    from ctxsim.data.triplets import iter_triplet_chunks
    from ctxsim.embedding.distances import cosine_distance_table

    tables = [cosine_distance_table(comparator._data[m]) for m in comparator.member_names]
    start = time.perf_counter()
    with open(out, "wb") as sink:
        for chunk in iter_triplet_chunks(csv):
            r, a, b = comparator.triplet_codes(chunk).T
            cols = {f"m{i}": t[r, b] - t[r, a] for i, t in enumerate(tables)}
            chunk.select("ref", "a", "b").with_columns(pl.Series(k, v) for k, v in cols.items()).write_csv(
                sink, include_header=sink.tell() == 0)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--members", type=int, default=8, choices=[4, 8])
    args = parser.parse_args(argv)
    setup_env(args.work)

    import polars as pl

    from ctxsim.compare.scoring import compare_files
    from ctxsim.compare.trained import RunComparator
    from ctxsim.ensemble.compiled import BoosterPredictor
    from ctxsim.ensemble.features import stacking_features

    images, _ = pool(args.work)
    run = trained_run(args.work, args.members)
    csv = rows_csv(args.work, args.rows, images)
    out = args.work / "out" / "steady.csv"
    comparator = RunComparator(run, progress=False)
    assert comparator.ensemble.chosen == "stacker", comparator.ensemble.chosen
    compare_files(comparator, rows_csv(args.work, 50_000, images), out, progress=False)  # warm: embed, compile

    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        compare_files(comparator, csv, out, progress=False)
        best = min(best, time.perf_counter() - start)
    rows_per_s = args.rows / best
    stage_s = stages(comparator, csv, out)
    floor_s = floor(comparator, csv, out)

    # The stacker alone on 1M rows as compare runs it (features, both A/B passes): LightGBM's predict on the
    # whole chunk (before), the same in row blocks, and the compiled trees in row blocks (now).
    chunk = pl.read_csv(csv, n_rows=min(args.rows, 1_000_000)).with_columns(
        *(pl.col(c).alias(f"_{c}_path") for c in ("ref", "a", "b")))
    margins, codes = comparator.member_margins(chunk)
    x = comparator._inputs(margins, codes, chunk, False)
    combiner = comparator.ensemble.combiners["stacker"]
    fast = combiner.model_.estimator_.fast_
    booster, compiled = fast.booster, fast.predictor
    fast._compiled = BoosterPredictor(booster)  # LightGBM's own predict
    lgbm_whole_s, p_whole = _time(lambda: combiner.model_.predict_proba(stacking_features(x, combiner.val_accuracy))[:, 1])
    lgbm_blocks_s, p_lgbm = _time(lambda: combiner.predict_proba(x))
    fast._compiled = compiled
    comp_s, p_comp = _time(lambda: combiner.predict_proba(x))
    identical = bool(np.array_equal(p_lgbm, p_comp) and np.array_equal(p_whole, p_comp))
    X = stacking_features(x.subset(np.arange(10)), combiner.val_accuracy)

    stage_rows = [{"stage": k, "seconds": round(v, 3), "rows_per_s": round(args.rows / v)} for k, v in stage_s.items()]
    n = len(x)
    stacker = {"features": X.shape[1], "trees": booster.num_trees(),
               "lightgbm_whole_chunk_rows_per_s": round(n / lgbm_whole_s), "lightgbm_blocks_rows_per_s": round(n / lgbm_blocks_s),
               "compiled_blocks_rows_per_s": round(n / comp_s), "speedup_over_before": round(lgbm_whole_s / comp_s, 2),
               "compiled": type(compiled).__name__, "identical_predictions": identical}
    result = {"benchmark": "steady_state", "machine": machine(), "members": len(comparator.member_names),
              "rows": args.rows, "images": len(images), "compare_seconds": round(best, 3), "rows_per_s": round(rows_per_s),
              "floor_rows_per_s": round(args.rows / floor_s), "compare_over_floor": round(best / floor_s, 2),
              "stages": stage_rows, "stacker_one_pass": stacker,
              "target": {"rows_per_s_at_least": TARGET_ROWS_PER_S, "met": rows_per_s >= TARGET_ROWS_PER_S}}
    table(stage_rows, ["stage", "seconds", "rows_per_s"], title=f"Where the time goes ({args.rows:,} rows, {result['members']} members)")
    table([stacker], list(stacker), title="Stacker on 1M rows (features + both A/B passes): LightGBM vs compiled trees")
    print(f"steady state: {rows_per_s:,.0f} rows/s ({best:.2f} s for {args.rows:,} rows, {result['members']} members + stacker); "
          f"floor (read + table lookups + write, no model): {args.rows / floor_s:,.0f} rows/s")
    save("steady_state", result)
    return result


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


if __name__ == "__main__":
    main()
