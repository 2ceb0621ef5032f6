"""Profile of ``compare``'s hot paths (``python -m benchmarks.profiling [--py-spy]``).

* Cold path (images not yet embedded): decoding, preprocessing and the backbone's forward pass over the
  image pool, each timed alone, then ``embed_images`` with and without decoding the next batch while the
  current one runs through the backbone.
* Warm path: with ``--py-spy``, samples a ``ctxsim compare`` subprocess of the 8-member run on 1M rows
  with py-spy and prints the functions where it spends its time (inclusive share of samples).
"""
from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import base_parser, machine, pool, rows_csv, save, setup_env, table, trained_run


def cold_path(images: list[str], repeat: int) -> list[dict]:
    import torch

    from ctxsim.embedding.cache import DEFAULT_BATCH_SIZE, DEFAULT_DECODE_THREADS, _forward_all
    from ctxsim.data.images import load_image
    from ctxsim.members.backbones import create_backbone

    backbone = create_backbone("efficientnet_lite0").eval()
    transform = backbone.preprocess.transform()
    rows = []

    def best(fn):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return min(times), out

    t_decode, decoded = best(lambda: [load_image(p) for p in images])
    t_pre, pixels = best(lambda: torch.stack([transform(img) for img in decoded]))
    with torch.inference_mode():
        backbone(pixels[:DEFAULT_BATCH_SIZE])
        t_fwd, _ = best(lambda: [backbone(pixels[s : s + DEFAULT_BATCH_SIZE]) for s in range(0, len(pixels), DEFAULT_BATCH_SIZE)])
    n = len(images)
    rows += [{"step": "decode (PIL, 1 thread)", "seconds": t_decode}, {"step": "preprocess (resize, crop, normalise; 1 thread)", "seconds": t_pre},
             {"step": f"backbone forward (batches of {DEFAULT_BATCH_SIZE})", "seconds": t_fwd}]
    for prefetch in (False, True):
        t, _ = best(lambda: _forward_all(images, backbone, "cpu", DEFAULT_BATCH_SIZE, DEFAULT_DECODE_THREADS, False, prefetch=prefetch))
        label = "next batch decoded during the forward pass" if prefetch else "decode batch, then forward (before)"
        rows.append({"step": f"embed_images, {DEFAULT_DECODE_THREADS} decode threads: {label}", "seconds": t})
    for r in rows:
        r["seconds"] = round(r["seconds"], 3)
        r["images_per_s"] = round(n / r["seconds"], 1)
    return rows


def py_spy(work, run, csv) -> list[dict]:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("py-spy not found: pip install py-spy (the test extra has it)", file=sys.stderr)
        return []
    raw = work / "profile.txt"
    cmd = [exe, "record", "-r", "50", "-f", "raw", "-o", str(raw), "--", sys.executable, "-m", "ctxsim.cli", "compare",
           str(run), str(csv), "--out", str(work / "out" / "profile.csv")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inclusive, total = collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        for frame in {re.sub(r":\d+\)", ")", f) for f in stack.split(";")}:
            inclusive[frame] += int(count)
    keep = ("ctxsim", "ensemble/", "members/", "lleaves", "polars", "lightgbm", "embeddings")
    return [{"function": f[:110], "share": round(c / total, 3)} for f, c in inclusive.most_common(400)
            if any(k in f for k in keep) and "<module>" not in f][:25]


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--py-spy", action="store_true", help="also sample a 1M-row `ctxsim compare` with py-spy")
    args = parser.parse_args(argv)
    setup_env(args.work)

    images, _ = pool(args.work)
    cold = cold_path(images, args.repeat)
    table(cold, ["step", "seconds", "images_per_s"], title=f"Cold path: embedding {len(images)} images (best of {args.repeat})")
    result = {"benchmark": "profiling", "machine": machine(), "images": len(images), "cold_path": cold}
    if args.py_spy:
        hot = py_spy(args.work, trained_run(args.work, 8), rows_csv(args.work, 1_000_000, images))
        table(hot, ["function", "share"], title="Warm compare of 1M rows (8 members): share of py-spy samples, inclusive")
        result["warm_compare_py_spy"] = hot
    save("profiling", result)
    return result


if __name__ == "__main__":
    main()
