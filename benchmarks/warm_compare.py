"""A warm ``ctxsim compare`` of 1k rows: wall time and peak memory (``python -m benchmarks.warm_compare``).

Every image of the input is already in the embedding cache. A run records the cache key of the features
each member reads, so compare finds its embeddings without building a backbone: it imports neither
torch nor timm, applies the heads in numpy (members/inference.py) and the LightGBM stacker as numpy
trees (ensemble/trees.py), so neither scikit-learn nor LightGBM is imported either. The baseline, in the
same run: the same run folder without those keys — a run saved before they existed, which compare loads
as every compare did before: torch, timm and every view's backbone with its weights. Each command runs
as a subprocess (peak RSS polled with psutil), alternating, best and median of ``--repeat`` runs.
Targets: at most 1.5 s wall and 400 MB peak.
"""
from __future__ import annotations

import json
import shutil
import sys

from benchmarks.common import FAST_TRAIN, base_parser, machine, median, peak_rss, pool, rows_csv, save, setup_env, table

ROWS = 1_000
TARGET_SECONDS, TARGET_MB = 1.5, 400


def default_run(work) -> object:
    """The default config (four views, 16 members), trained once with the benchmarks' faster settings."""
    import subprocess

    folder = work / "runs" / "default-views"
    specs = folder / "members" / "members.json"
    if specs.exists() and all(s.get("features_key") for s in json.loads(specs.read_text())):
        return folder
    _, csvs = pool(work)
    args = [sys.executable, "-m", "ctxsim.cli", "train", "--no-track", "--triplets", *map(str, csvs), "--out", str(folder)]
    for kv in FAST_TRAIN:
        args += ["--set", kv]
    print(f"training the default run into {folder} (once; a few minutes)", file=sys.stderr)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return folder


def legacy_copy(run, target):
    """``run`` as a run saved before members recorded their features' cache key (manifest re-signed)."""
    from ctxsim.run_folder import MANIFEST_FILE, RunManifest, file_sha256

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run, target, symlinks=False)
    specs_file = target / "members" / "members.json"
    specs = json.loads(specs_file.read_text())
    for spec in specs:
        spec.pop("features_key", None)
    specs_file.write_text(json.dumps(specs, indent=1))
    manifest = RunManifest.from_json((target / MANIFEST_FILE).read_text(), str(target))
    manifest.files["members/members.json"] = file_sha256(specs_file)
    (target / MANIFEST_FILE).write_text(manifest.to_json())
    return target


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    setup_env(args.work)
    images, _ = pool(args.work)
    run = default_run(args.work)
    legacy = legacy_copy(run, args.work / "runs" / "default-views-legacy")
    csv = rows_csv(args.work, ROWS, images)
    systems = {"warm (features keys, no torch)": run, "baseline (backbones built)": legacy}
    command = lambda folder, name: [sys.executable, "-m", "ctxsim.cli", "compare", str(folder), str(csv),  # noqa: E731
                                    "--out", str(args.work / "out" / f"warm-{name}.csv")]
    peak_rss(command(legacy, "fill"))  # embeds the pool with every view: both systems then run warm
    samples = {name: [] for name in systems}
    for _ in range(args.repeat):
        for i, (name, folder) in enumerate(systems.items()):
            peak, seconds, _ = peak_rss(command(folder, str(i)))
            samples[name].append((seconds, peak / 2**20))
    outputs = [(args.work / "out" / f"warm-{i}.csv").read_bytes() for i in range(len(systems))]
    rows = [{"system": name, "rows": ROWS, "best_s": round(min(s for s, _ in xs), 2), "median_s": round(median([s for s, _ in xs]), 2),
             "peak_rss_mb": round(max(m for _, m in xs))} for name, xs in samples.items()]
    warm, base = rows
    result = {"machine": machine(), "rows": rows, "same_output": outputs[0] == outputs[1],
              "speedup_median": round(base["median_s"] / warm["median_s"], 2),
              "memory_ratio": round(warm["peak_rss_mb"] / base["peak_rss_mb"], 2),
              "targets": {"seconds": TARGET_SECONDS, "peak_mb": TARGET_MB},
              "met": warm["median_s"] <= TARGET_SECONDS and warm["peak_rss_mb"] <= TARGET_MB}
    table(rows, ["system", "rows", "best_s", "median_s", "peak_rss_mb"], title=f"Warm compare of {ROWS} rows")
    print(f"speed-up {result['speedup_median']}x, memory {result['memory_ratio']}x, same output: {result['same_output']}, "
          f"targets met: {result['met']}")
    save("warm_compare", result)
    return result


if __name__ == "__main__":
    main()
