"""``compare`` throughput (triplets/s) against naive per-row scoring (``python -m benchmarks.compare_throughput``).

Rows are random triplets over a fixed image pool (the 170 images of the shared data). ``compare`` runs
the way the CLI does (validate, embed each unique image once, score in chunks, write the CSV), from a
cold embedding cache; the model is loaded before the clock starts. The naive baseline is how per-pair
metric APIs are commonly used: for every row and every member, load and preprocess ref, a and b, run the
member's forward pass (backbone + head, no cache), take the margin, then run the ensemble on that one
row. The naive baseline is timed on ``--naive-rows`` rows and extrapolated linearly to each size (its
cost per row does not depend on the number of rows); the output says so.
"""
from __future__ import annotations

import time
from pathlib import Path

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

SIZES = [1_000, 10_000, 100_000, 1_000_000]
TARGET_RATIO_AT_100K = 20.0


class NaiveScorer:
    """Every member on the three images of every row: load + preprocess + forward, nothing cached."""

    def __init__(self, run: Path):
        import json

        import torch
        from safetensors.torch import load_file

        from ctxsim.contexts.membership import Contexts
        from ctxsim.ensemble.selection import Ensemble
        from ctxsim.members.backbones import create_backbone
        from ctxsim.members.heads import ResidualHead
        from ctxsim.members.inference import MemberSpec

        meta = json.loads((run / "run.json").read_text())
        self.backbone = create_backbone(meta["backbone"], pretrained=True).eval()
        self.transform = self.backbone.preprocess.transform()
        self.specs = [MemberSpec(**d) for d in json.loads((run / "members" / "members.json").read_text())]
        self.heads = {}
        for spec in self.specs:
            if spec.kind == "head":
                head = ResidualHead(self.backbone.feature_dim, spec.hidden)
                head.load_state_dict(load_file(str(run / "members" / f"{spec.name}.safetensors")))
                self.heads[spec.name] = head.eval()
        self.contexts = Contexts.load(run / "contexts")
        self.ensemble = Ensemble.load(run / "ensemble")
        self.torch = torch

    def score_row(self, ref: str, a: str, b: str) -> float:
        import torch.nn.functional as F

        from ctxsim.data.images import load_image
        from ctxsim.ensemble.inputs import EnsembleInputs

        margins, zeroshot_ref = [], None
        with self.torch.inference_mode():
            for spec in self.specs:
                x = self.torch.stack([self.transform(load_image(p)) for p in (ref, a, b)])
                feats = self.backbone(x)
                emb = self.heads[spec.name](feats) if spec.name in self.heads else F.normalize(feats, dim=-1)
                if spec.kind == "zeroshot":
                    zeroshot_ref = F.normalize(feats, dim=-1)[0].numpy()
                margins.append(float((1 - emb[0] @ emb[2]) - (1 - emb[0] @ emb[1])))
        membership = self.contexts.membership(zeroshot_ref[None])
        x = EnsembleInputs(np.asarray([margins], dtype=np.float32), membership, [s.name for s in self.specs],
                           zeroshot_ref[None], np.zeros(1, int))
        return float(self.ensemble.predict(x)[0])


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--members", type=int, default=4, choices=[4, 8], help="members of the trained run")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--naive-rows", type=int, default=30, help="rows the naive baseline is timed on")
    args = parser.parse_args(argv)
    setup_env(args.work)

    import polars as pl

    from ctxsim.compare.scoring import compare_files
    from ctxsim.compare.trained import RunComparator
    from ctxsim.embedding.cache import EmbeddingCache

    images, _ = pool(args.work)
    run = trained_run(args.work, args.members)

    naive = NaiveScorer(run)
    sample = pl.read_csv(rows_csv(args.work, 1_000, images)).head(args.naive_rows + 2).rows()
    for ref, a, b, _ in sample[:2]:  # warm-up: first calls allocate
        naive.score_row(ref, a, b)
    start = time.perf_counter()
    for ref, a, b, _ in sample[2:]:
        naive.score_row(ref, a, b)
    naive_row_s = (time.perf_counter() - start) / args.naive_rows

    rows = []
    for n in args.sizes:
        csv = rows_csv(args.work, n, images)
        comparator = RunComparator(run, cache=EmbeddingCache(), progress=False)  # cold cache: embeds the pool
        start = time.perf_counter()
        compare_files(comparator, csv, args.work / "out" / f"throughput-{n}.csv", progress=False)
        seconds = time.perf_counter() - start
        naive_s = naive_row_s * n
        rows.append({"rows": n, "compare_s": round(seconds, 3), "compare_rows_per_s": round(n / seconds),
                     "naive_s_extrapolated": round(naive_s, 1), "naive_rows_per_s": round(1 / naive_row_s, 2),
                     "speedup": round(naive_s / seconds, 1)})
    note = (f"naive baseline timed on {args.naive_rows} rows ({naive_row_s * 1000:.0f} ms/row, {len(naive.specs)} members x "
            f"3 images per row) and extrapolated linearly to each size; compare from a cold embedding cache "
            f"({len(images)} unique images), model loaded before timing")
    at_100k = next((r["speedup"] for r in rows if r["rows"] == 100_000), None)
    result = {"benchmark": "compare_throughput", "machine": machine(), "run_members": args.members, "images": len(images),
              "naive_seconds_per_row": naive_row_s, "note": note, "rows": rows,
              "target": {"speedup_at_100k_at_least": TARGET_RATIO_AT_100K, "speedup_at_100k": at_100k,
                         "met": at_100k is not None and at_100k >= TARGET_RATIO_AT_100K}}
    table(rows, ["rows", "compare_s", "compare_rows_per_s", "naive_s_extrapolated", "naive_rows_per_s", "speedup"],
          title=f"compare vs naive per-row scoring ({args.members} members)")
    print(note)
    save("compare_throughput", result)
    return result


if __name__ == "__main__":
    main()
