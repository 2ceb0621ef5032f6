"""``compare --explain`` against a plain compare on the same rows (``python -m benchmarks.explain_speed``).

The 8-member run with the LightGBM stacker (benchmarks/common.py) is warmed (images embedded, trees
compiled), then ``compare_files`` scores ``--rows`` rows (1M by default; validation and CSV writing
included) plain, with ``--explain`` (the ``why`` column) and with ``--explain=full`` (one column per
feature), best of ``--repeat`` each, in turn in one process. The first explanation of the process (which
builds the model's cell tables, ensemble/tree_contributions.py) is timed apart. Target: ``--explain`` at no
less than half the speed of the plain compare.
"""
from __future__ import annotations

import os
import time

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

#: ``--explain`` must run at least this share of a plain compare's rows/s.
TARGET_SPEED_RATIO = 0.5
LEVELS = (None, "top", "full")


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    setup_env(args.work)

    from ctxsim.compare.scoring import compare_files
    from ctxsim.compare.trained import RunComparator

    images, _ = pool(args.work)
    run = trained_run(args.work, 8)
    csv = rows_csv(args.work, args.rows, images)
    out = args.work / "out" / "explain.csv"
    comparator = RunComparator(run, progress=False)
    assert comparator.ensemble.chosen == "stacker", comparator.ensemble.chosen
    warm_csv = rows_csv(args.work, 50_000, images)
    compare_files(comparator, warm_csv, out, progress=False)  # warm: embed, compile the trees
    comparator.set_explain("top")
    start = time.perf_counter()
    compare_files(comparator, warm_csv, out, progress=False)  # and build the cell tables (once per model and process)
    warm_explain_s = time.perf_counter() - start
    load_start = [round(x, 2) for x in os.getloadavg()]

    seconds = {level: float("inf") for level in LEVELS}
    for _ in range(args.repeat):  # interleaved, so a burst of load slows every level alike
        for level in LEVELS:
            comparator.set_explain(level)
            start = time.perf_counter()
            compare_files(comparator, csv, out, progress=False)
            seconds[level] = min(seconds[level], time.perf_counter() - start)
    plain = seconds[None]
    rows = [{"compare": "plain" if level is None else f"--explain={level}", "seconds": round(s, 2),
             "rows_per_s": round(args.rows / s), "speed_vs_plain": round(plain / s, 3)} for level, s in seconds.items()]
    ratio = plain / seconds["top"]
    result = {"benchmark": "explain_speed", "machine": machine() | {"load_average_after_warm_up": load_start,
                                                                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              "members": len(comparator.member_names), "rows": args.rows, "images": len(images), "results": rows,
              "first_explain_of_50k_rows_seconds": round(warm_explain_s, 2),
              "notes": "the first large --explain of a process builds the model's cell tables "
                       "(ensemble/tree_contributions.py); that is in first_explain_of_50k_rows_seconds, not in the results",
              "target": {"explain_speed_vs_plain_at_least": TARGET_SPEED_RATIO, "ratio": round(ratio, 3),
                         "met": ratio >= TARGET_SPEED_RATIO}}
    table(rows, ["compare", "seconds", "rows_per_s", "speed_vs_plain"],
          title=f"compare --explain vs plain, {args.rows:,} rows, {result['members']} members + stacker (best of {args.repeat})")
    print(f"--explain runs at {ratio:.2f}x the speed of a plain compare (target >= {TARGET_SPEED_RATIO}); "
          f"load average {result['machine']['load_average_at_end']} at the end on {os.cpu_count()} CPUs")
    save("explain_speed", result)
    return result


if __name__ == "__main__":
    main()
