"""What the benchmarks share: the image pool (the shared data's images), generated triplet CSVs, trained
runs (cached in a work folder), timing, peak memory of a subprocess, and the results folder.

Timings on a small shared machine are noisy: every benchmark reports ratios against a baseline measured
in the same run, beside the absolute numbers.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_WORK = Path(tempfile.gettempdir()) / "ctxsim-bench"

#: Training settings of the benchmark runs: real members and a real LightGBM stacker (150 trees, as
#: ``ctxsim train`` makes), with fewer epochs and folds so a run trains in a few minutes on 2 CPUs.
FAST_TRAIN = ["folds=2", "member.epochs=4", "ensemble.select=stacker", "ensemble.folds=2"]
#: Member count -> extra training settings, one view (the backbone's last layer): 4 = zero-shot + global + one
#: per declared context (materials, shoes); 8 = zero-shot + global + six discovered contexts.
RUNS = {4: ["views=[]"], 8: ["views=[]", "contexts.mode=discovered", "contexts.k=6", "contexts.min_triplets=50"]}


def setup_env(work: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    os.environ["CTXSIM_CACHE"] = str(work / "cache")  # never ~/.cache
    work.mkdir(parents=True, exist_ok=True)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def pool(work: Path) -> tuple[list[str], list[Path]]:
    """The shared data imported once into ``work/data``: (every image path, sorted; the labelled CSVs)."""
    from ctxsim.demo import data_dir, import_all

    data = work / "data"
    csvs = sorted(data.glob("*/*.csv"))
    if not csvs:
        imported = import_all(data_dir(None), data)
        csvs = sorted(c for cs in imported.values() for c in cs)
    images = sorted(str(p) for p in data.glob("*/images/*") if p.is_file())
    return images, csvs


def write_rows(path: Path, n: int, images: list[str], seed: int = 0) -> Path:
    """``n`` random triplets (three distinct images each, absolute paths) with a random label."""
    import polars as pl

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    k = len(images)
    ref = rng.integers(0, k, n)
    da, db = rng.integers(1, k, n), rng.integers(1, k - 1, n)
    db = np.where(db >= da, db + 1, db)  # offsets of a and b from ref: distinct and never 0
    a, b = (ref + da) % k, (ref + db) % k
    names = np.asarray(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"ref": names[ref], "a": names[a], "b": names[b], "label": np.where(rng.random(n) < 0.5, "A", "B")}).write_csv(path)
    return path


def rows_csv(work: Path, n: int, images: list[str], tag: str = "pool") -> Path:
    return write_rows(work / "rows" / f"{tag}-{n}.csv", n, images)


def trained_run(work: Path, members: int) -> Path:
    """A run with ``members`` members trained on the shared data (trained once, then reused)."""
    from ctxsim.compare.model_uri import load_comparator

    folder = work / "runs" / f"members-{members}"
    if (folder / "run.json").exists():
        try:
            if len(load_comparator(str(folder), progress=False).member_names) == members:
                return folder
        except Exception as err:  # noqa: BLE001 - a run of older code: train it again
            print(f"retraining {folder}: {type(err).__name__}: {err}", file=sys.stderr)
    _, csvs = pool(work)
    args = [sys.executable, "-m", "ctxsim.cli", "train", "--no-track", "--triplets", *map(str, csvs), "--out", str(folder)]
    for kv in FAST_TRAIN + RUNS[members]:
        args += ["--set", kv]
    print(f"training a {members}-member run into {folder} (once; a few minutes)", file=sys.stderr)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    found = len(load_comparator(str(folder), progress=False).member_names)
    if found != members:
        raise RuntimeError(f"{folder} has {found} members, not {members}")
    return folder


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """(best wall seconds of ``repeat`` calls, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def median(xs) -> float:
    return float(statistics.median(xs))


def _anon_bytes(pid: int) -> int:
    """Anonymous resident memory (heap, not file pages such as a memory-mapped input CSV), from /proc."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(cmd: list[str], interval: float = 0.02, env: dict | None = None) -> tuple[int, float, int]:
    """(peak resident memory in bytes of ``cmd`` and its children, wall seconds, peak anonymous memory),
    polled with psutil."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ps = psutil.Process(proc.pid)
    peak, peak_anon, done = 0, 0, threading.Event()

    def poll():
        nonlocal peak, peak_anon
        while not done.is_set():
            try:
                procs = [ps, *ps.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
                peak_anon = max(peak_anon, sum(_anon_bytes(p.pid) for p in procs))
            except psutil.Error:
                pass
            time.sleep(interval)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    code = proc.wait()
    done.set()
    poller.join()
    if code:
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}")
    return peak, time.perf_counter() - start, peak_anon


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(path)
    return path


def table(rows: list[dict], columns: list[str], title: str) -> None:
    from ctxsim.console import print_table

    print_table(rows, columns, title=title)


def base_parser(doc: str):
    import argparse

    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help=f"folder for imported data, generated CSVs, trained runs and caches (default {DEFAULT_WORK})")
    return parser
