"""End to end on the real data with the real EfficientNet-Lite0: train on some of the images of both
sets, then judge the run on triplets whose three images were all held back from training."""
from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from ctxsim.config import load_config
from ctxsim.embedding.cache import EmbeddingCache, default_cache_dir
from ctxsim.compare.trained import RunComparator
from ctxsim.data.importers import import_dataset
from ctxsim.train.pipeline import train_run

SETS = {"shoes": "zappos", "materials": "materials"}
HOLDOUT = 0.25  # share of each set's images held back from training
MAX_TRAIN_ROWS = 20_000  # per set: keeps the test fast
SEED = 0
#: Context members trained on their context alone (not started from, and pulled toward, the global member as
#: by default): this test checks that such a member learns its own context better than zero-shot; a
#: default context member stays near its global member, whose gain is checked below and in the benchmark.
CONFIG = ["folds=3", "member.context_init=zeroshot"]
#: The ensemble may trail the best single member (picked on the test rows themselves) by this much on
#: held-back images: over five hold-out draws the best member changed identity (global or context-shoes,
#: 2-3 points apart on ~17 held-back shoe images) and the ensemble trailed it by 0.000-0.013 ...
ENSEMBLE_TOLERANCE = 0.015
#: ... and must beat the zero-shot backbone by at least this much.
MIN_GAIN_OVER_ZERO_SHOT = 0.02


def split_by_images(df: pl.DataFrame, share: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows over kept images only, rows over held-back images only)."""
    images = sorted(set(df["ref"]) | set(df["a"]) | set(df["b"]))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(images, round(share * len(images)), replace=False).tolist())
    named = [pl.col(c).is_in(list(held)) for c in ("ref", "a", "b")]
    return df.filter(~pl.any_horizontal(named)), df.filter(pl.all_horizontal(named))


def hits(scored: pl.DataFrame, column: str) -> np.ndarray:
    """Per row, whether ``column`` (a margin or p_a - 1/2: > 0 means A) agrees with the label; tied votes left out."""
    rows = scored.filter(pl.col("votes_a") != pl.col("votes_b")) if "votes_a" in scored.columns else scored
    return ((rows[column] > 0) == (rows["label"] == "A")).to_numpy()


@pytest.mark.e2e
def test_trained_run_beats_zero_shot_on_held_back_images(shared_data, tmp_path):
    started = time.time()
    train_csvs, test = [], {}
    for context, kind in SETS.items():
        (csv, *_) = import_dataset(kind, shared_data / kind, tmp_path / kind, context=context)
        df = pl.read_csv(csv, schema_overrides={"votes_a": pl.Int64, "votes_b": pl.Int64})
        fit, held = split_by_images(df, HOLDOUT, SEED)
        assert held.height >= 200, (context, held.height)
        fit.sample(min(MAX_TRAIN_ROWS, fit.height), seed=SEED).write_csv(tmp_path / kind / "fit.csv")
        train_csvs.append(tmp_path / kind / "fit.csv")
        test[context] = held.drop("context")  # compare must route the held-back references itself

    metrics = train_run(train_csvs, tmp_path / "run", cfg=load_config(None, CONFIG), progress=False)
    trained_s = time.time() - started

    comparator = RunComparator(tmp_path / "run", cache=EmbeddingCache(default_cache_dir()), progress=False)
    scored = {c: comparator.score(df, images=tmp_path / SETS[c], margins=True).with_columns((pl.col("p_a") - 0.5).alias("ensemble"))
              for c, df in test.items()}
    systems = ["ensemble", *(f"margin_{m}" for m in comparator.member_names)]
    table = {c: {s: float(hits(df, s).mean()) for s in systems} for c, df in scored.items()}
    table["(all)"] = {s: float(np.concatenate([hits(df, s) for df in scored.values()]).mean()) for s in systems}
    print(f"\nheld-back images: {', '.join(f'{c} {df.height} rows' for c, df in scored.items())}; "
          f"training {trained_s:.0f} s, in all {time.time() - started:.0f} s; chosen: {metrics['ensemble']['chosen']}")
    for c, row in table.items():
        print(f"{c:>10}: " + "  ".join(f"{s.removeprefix('margin_')} {v:.3f}" for s, v in row.items()))

    for c, df in scored.items():  # unseen references are routed to their own set's context
        assert (df["context"] == c).mean() >= 0.99, c
    for c in SETS:  # each context's own member beats the zero-shot backbone on its context
        assert table[c][f"margin_context-{c}"] > table[c]["margin_zeroshot"], (c, table[c])
    overall = table["(all)"]
    assert overall["margin_global"] > overall["margin_zeroshot"], overall
    best_member = max(v for s, v in overall.items() if s.startswith("margin_"))
    assert overall["ensemble"] >= best_member - ENSEMBLE_TOLERANCE, overall
    assert overall["ensemble"] >= overall["margin_zeroshot"] + MIN_GAIN_OVER_ZERO_SHOT, overall
