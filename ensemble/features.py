"""Stacking features: every member's margin, the reference's context membership, and each member's
validation accuracy where that reference lives (membership-weighted), so the stacker learns how far
to trust each member where."""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.inputs import EnsembleInputs


def stacking_features(x: EnsembleInputs, val_accuracy: np.ndarray) -> np.ndarray:
    """(n, 2M + K): margins, membership, expected member accuracy. ``val_accuracy`` is (M, K)."""
    expected = x.membership @ np.nan_to_num(val_accuracy, nan=0.5).T
    return np.hstack([x.margins, x.membership, expected]).astype(np.float32)


def feature_names(member_names: list[str], context_names: list[str]) -> list[str]:
    return [f"margin_{m}" for m in member_names] + [f"member_{c}" for c in context_names] + [f"acc_{m}" for m in member_names]
