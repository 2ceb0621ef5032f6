"""Stacking features: every member's margin, each margin weighted by the reference's membership of
each context, the membership itself, and each member's validation accuracy where that reference lives
(membership-weighted), so the stacker learns how far to trust each member where. The weighted margins
let a linear stacker trust a member in one context and not in another (a tree could split on
membership, a linear model cannot)."""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.schema import margin_column


def n_signed(n_members: int, n_contexts: int) -> int:
    """How many leading feature columns are margins (plain and weighted): they change sign when A and B swap."""
    return n_members * (1 + n_contexts)


def stacking_features(x: EnsembleInputs, val_accuracy: np.ndarray) -> np.ndarray:
    """(n, M(1 + K) + K + M): margins, margins x membership, membership, expected member accuracy.
    ``val_accuracy`` is (M, K)."""
    weighted = (x.margins[:, :, None] * x.membership[:, None, :]).reshape(len(x), -1)  # member-major
    expected = x.membership @ np.nan_to_num(val_accuracy, nan=0.5).T
    return np.hstack([x.margins, weighted, x.membership, expected]).astype(np.float32)


def feature_names(member_names: list[str], context_names: list[str]) -> list[str]:
    return ([margin_column(m) for m in member_names] + [f"margin_{m}@{c}" for m in member_names for c in context_names]
            + [f"member_{c}" for c in context_names] + [f"acc_{m}" for m in member_names])
