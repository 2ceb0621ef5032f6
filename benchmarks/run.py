"""Run benchmarks by name: ``python benchmarks/run.py NAME [NAME ...] [-- ARGS]`` or ``all``.

Names: compare_throughput, members_concurrency, steady_state, memory, scaling, training_time, profiling, unique_images,
index_scale, retrieval_quality (and any other
``benchmarks/<name>.py`` with a ``main(argv)``). Each prints its table and writes
``benchmarks/results/<name>.json``. Arguments after ``--`` go to every benchmark (e.g. ``--work DIR``).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

ALL = ["members_concurrency", "steady_state", "compare_throughput", "memory", "scaling", "training_time"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    names = argv[: argv.index("--")] if "--" in argv else argv
    if not names or names in (["-h"], ["--help"]):
        print(__doc__)
        return 0 if names else 2
    for name in ALL if names == ["all"] else names:
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main(extra)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
