"""How ``compare`` time grows with rows, unique images and members (``python -m benchmarks.scaling``).

* rows x members: 1k to 1M rows over the 170 shared images, with the zero-shot backbone (1 member) and
  trained runs of 4 and 8 members + stacker; embeddings come from the (warm) cache.
* unique images: 100k rows over 170, 1000 and 5000 images (variants of the shared images: crops, flips,
  colour shifts), 4 members, from a cold cache (every image embedded) and then warm. Past 4096 images
  the per-member distance tables give way to gathered dot products.

Everything runs in one process; a fresh comparator per point (model loading not timed). Writes
``benchmarks/results/scaling.json`` and a Markdown table (``scaling.md``) for the README.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, base_parser, machine, pool, rows_csv, save, setup_env, table, trained_run

ROWS = [1_000, 10_000, 100_000, 1_000_000]
MEMBERS = [1, 4, 8]
IMAGES = [170, 1000, 5000]
IMAGES_ROWS = 100_000
ZERO_SHOT = "backbone:efficientnet_lite0"


def image_variants(work: Path, images: list[str], n: int) -> list[str]:
    """``n`` distinct images: the pool itself, then seeded crops / flips / colour shifts of it."""
    from PIL import Image, ImageOps

    if n <= len(images):
        return images[:n]
    folder = work / f"images-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    out = list(images)
    rng = np.random.default_rng(0)
    for i in range(n - len(images)):
        path = folder / f"v{i}.jpg"
        if not path.exists():
            with Image.open(images[i % len(images)]) as img:
                img = img.convert("RGB")
                w, h = img.size
                s = rng.uniform(0.6, 0.95)
                x0, y0 = rng.uniform(0, 1 - s) * w, rng.uniform(0, 1 - s) * h
                img = img.crop((int(x0), int(y0), int(x0 + s * w), int(y0 + s * h)))
                if rng.random() < 0.5:
                    img = ImageOps.mirror(img)
                shift = rng.integers(-25, 26, 3)
                img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + shift, 0, 255).astype(np.uint8))
                img.save(path, quality=90)
        out.append(str(path))
    return out


def comparator_for(work: Path, members: int, cache=None):
    from ctxsim.compare.model_uri import load_comparator

    model = ZERO_SHOT if members == 1 else str(trained_run(work, members))
    return load_comparator(model, progress=False, **({"cache": cache} if cache is not None else {}))


def timed_compare(comparator, csv: Path, out: Path) -> float:
    from ctxsim.compare.scoring import compare_files

    start = time.perf_counter()
    compare_files(comparator, csv, out, progress=False)
    return time.perf_counter() - start


def markdown(rows_table: list[dict], images_table: list[dict], members: list[int]) -> str:
    lines = ["| rows | " + " | ".join(f"{m} member{'s' if m > 1 else ''}: s (rows/s)" for m in members) + " |",
             "|---:|" + "---:|" * len(members)]
    for n in sorted({r["rows"] for r in rows_table}):
        cells = []
        for m in members:
            r = next(x for x in rows_table if x["rows"] == n and x["members"] == m)
            cells.append(f"{r['seconds']:.2f} ({r['rows_per_s']:,})")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    lines += ["", f"| unique images ({IMAGES_ROWS:,} rows, 4 members) | cold cache: s | embedding images/s | warm cache: s | warm rows/s |",
              "|---:|---:|---:|---:|---:|"]
    for r in images_table:
        lines.append(f"| {r['images']:,} | {r['cold_s']:.2f} | {r['images_per_s_cold']:.1f} | {r['warm_s']:.2f} | {r['warm_rows_per_s']:,} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=ROWS)
    parser.add_argument("--members", type=int, nargs="+", default=MEMBERS, choices=MEMBERS)
    parser.add_argument("--images", type=int, nargs="+", default=IMAGES)
    args = parser.parse_args(argv)
    setup_env(args.work)

    from ctxsim.embedding.cache import EmbeddingCache

    images, _ = pool(args.work)
    out = args.work / "out" / "scaling.csv"
    for m in args.members:  # warm the persistent cache (embeddings, compiled stacker) for the pool
        timed_compare(comparator_for(args.work, m), rows_csv(args.work, 1_000, images), out)

    rows_table = []
    for m in args.members:
        for n in args.rows:
            seconds = timed_compare(comparator_for(args.work, m), rows_csv(args.work, n, images), out)
            rows_table.append({"members": m, "rows": n, "seconds": round(seconds, 3), "rows_per_s": round(n / seconds)})

    images_table = []
    for k in args.images:
        pool_k = image_variants(args.work, images, k)
        csv = rows_csv(args.work, IMAGES_ROWS, pool_k, tag=f"images{k}")
        cold = timed_compare(comparator_for(args.work, 4, cache=EmbeddingCache()), csv, out)  # in-memory cache: all embedded
        timed_compare(comparator_for(args.work, 4), csv, out)  # fill the persistent cache
        warm = timed_compare(comparator_for(args.work, 4), csv, out)
        images_table.append({"images": k, "rows": IMAGES_ROWS, "cold_s": round(cold, 2), "images_per_s_cold": round(k / cold, 1),
                             "warm_s": round(warm, 3), "warm_rows_per_s": round(IMAGES_ROWS / warm)})

    md = markdown(rows_table, images_table, args.members)
    result = {"benchmark": "scaling", "machine": machine(), "rows_x_members": rows_table, "unique_images": images_table,
              "note": "in-process compare_files (validate, embed, score, write); fresh comparator per point, model load not "
                      "timed; rows x members from a warm embedding cache"}
    table(rows_table, ["members", "rows", "seconds", "rows_per_s"], title="compare time: rows x members (warm cache)")
    table(images_table, ["images", "rows", "cold_s", "images_per_s_cold", "warm_s", "warm_rows_per_s"],
          title=f"compare time: unique images ({IMAGES_ROWS:,} rows, 4 members)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.md").write_text(md)
    print(md)
    save("scaling", result)
    return result


if __name__ == "__main__":
    main()
