"""Out-of-fold margins for both regimes a run answers in: new images and known images.

Image folds (ctxsim/train/pipeline.py) give each triplet margins from member copies that never saw
its reference: the *new images* regime. Triplet folds add a second set: the rows are split into
``triplet_folds`` folds and every member is retrained once per fold without that fold's rows, so the
fold's triplets are new but their images known: the *known images* regime (where a member's memory,
members/memory.py, counts). The stacker trains on both sets, each row with ``seen_ref, seen_a,
seen_b`` (ensemble/regime.py) saying which of its images the copy that scored it was trained on, so
it learns how far to trust each member on new and on known images.
"""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.regime import seen_by
from ctxsim.members.inference import MemberSpec
from ctxsim.members.training import Triplets
from ctxsim.train.member_fits import TRIPLET_FOLDS, FitJob


def triplet_folds(n_rows: int, folds: int, seed: int) -> np.ndarray:
    """Each row's triplet fold: a seeded permutation dealt out in turn (another stream than the image folds')."""
    return np.random.default_rng([seed, n_rows]).permutation(n_rows) % folds


def triplet_fold_jobs(specs: list[MemberSpec], triplets: Triplets, row_context: np.ndarray, row_tfold: np.ndarray,
                      folds: int, seed: int) -> list[FitJob]:
    """Every member once per triplet fold, on its own triplets outside that fold."""
    jobs = []
    for spec in specs:
        mine = np.ones(len(triplets), bool) if spec.context is None else row_context == spec.context
        for fold in range(folds):
            jobs.append(FitJob(spec, fold, triplets.subset(mine & (row_tfold != fold)), seed + 1000 + fold, folds=TRIPLET_FOLDS))
    return jobs


def oof_seen(triplets: Triplets, fold_of_row: np.ndarray, trained: list[np.ndarray]) -> np.ndarray:
    """(n, 3) ``seen`` of each row: its images among those of the rows that fold's copies trained on
    (``trained[f]``: a mask of those rows)."""
    seen = np.zeros((len(triplets), 3))
    for fold, mask in enumerate(trained):
        rows = fold_of_row == fold
        if rows.any():
            seen[rows] = seen_by(triplets.subset(mask).images(), triplets.ref[rows], triplets.a[rows], triplets.b[rows])
    return seen


def image_fold_seen(triplets: Triplets, image_fold: np.ndarray, row_fold: np.ndarray, folds: int) -> np.ndarray:
    """``seen`` of the image-fold margins: fold f's copies trained on the rows naming no fold-f image."""
    trained = [~triplets.touches(np.flatnonzero(image_fold == f)) for f in range(folds)]
    return oof_seen(triplets, row_fold, trained)


def triplet_fold_seen(triplets: Triplets, row_tfold: np.ndarray, folds: int) -> np.ndarray:
    """``seen`` of the triplet-fold margins: fold g's copies trained on every row outside fold g."""
    return oof_seen(triplets, row_tfold, [row_tfold != g for g in range(folds)])


def both_regimes(x: EnsembleInputs, seen: np.ndarray, known_margins: np.ndarray, known_seen: np.ndarray) -> EnsembleInputs:
    """The stacker's training rows: every triplet twice, with its image-fold and its triplet-fold margins."""
    twice = np.concatenate([np.arange(len(x))] * 2)
    both = x.subset(twice)
    both.margins = np.vstack([x.margins, np.asarray(known_margins, dtype=np.float64)])
    both.seen = np.vstack([seen, known_seen])
    return both
