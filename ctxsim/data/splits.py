"""Hold out images, not only rows: a fair test of similarity models is triplets over images they never saw.

:func:`split_by_images` picks a share of the images of a triplet set; the *fit* part keeps the rows
whose three images are all kept, the *held-out* part the rows whose three images are all held out.
Rows that mix the two are dropped (in neither part), so no held-out image ever reaches training.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.data.triplets import read_triplets, write_triplets
from ctxsim.schema import IMAGE_COLUMNS, PATH

DEFAULT_HOLDOUT = 0.25
DEFAULT_SEED = 0


def split_by_images(df: pl.DataFrame, holdout: float = DEFAULT_HOLDOUT, seed: int = DEFAULT_SEED) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(fit rows, held-out rows) of a frame read by :func:`ctxsim.data.triplets.read_triplets`."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    images = sorted(set().union(*(df[PATH[c]].to_list() for c in IMAGE_COLUMNS)))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(images, size=max(1, round(holdout * len(images))), replace=False).tolist())
    is_held = [pl.col(PATH[c]).is_in(list(held)) for c in IMAGE_COLUMNS]
    return df.filter(~pl.any_horizontal(is_held)), df.filter(pl.all_horizontal(is_held))


def split_files(csvs, images, out_fit, out_heldout, holdout: float = DEFAULT_HOLDOUT, seed: int = DEFAULT_SEED) -> tuple[int, int]:
    """Split triplet CSVs by images into two CSVs, image paths relative to each output's folder;
    returns the row counts."""

    fit, heldout = split_by_images(read_triplets(csvs, images, check_images=False), holdout, seed)
    for part, out in ((fit, out_fit), (heldout, out_heldout)):
        write_triplets(_relative_to(part, Path(out).resolve().parent), out)
    return fit.height, heldout.height


def _relative_to(df: pl.DataFrame, folder: Path) -> pl.DataFrame:
    """``ref, a, b`` rewritten relative to ``folder`` (from the resolved paths)."""
    unique = set().union(*(df[PATH[c]].to_list() for c in IMAGE_COLUMNS))
    relative = {p: os.path.relpath(p, folder) for p in unique}
    return df.with_columns(df[PATH[c]].replace_strict(relative, return_dtype=pl.String).alias(c) for c in IMAGE_COLUMNS)
