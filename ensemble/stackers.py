"""Stacking learners as scikit-learn estimators over :func:`stacking_features`.

:class:`SymmetricStacker` wraps any scikit-learn classifier (LightGBM by default, with monotone
constraints: a larger margin for A never lowers P(A)). It trains on every triplet and its A/B
swap; it predicts as :class:`~ctxsim.ensemble.symmetric.SymmetricModel` does (``(f(x) + 1 - f(swap(x))) / 2``,
so swapping A and B gives exactly ``1 - p_a``). Only training imports this module (scikit-learn).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from ctxsim.ensemble.symmetric import SymmetricModel, swap_margins

#: LightGBM defaults: few, shallow trees — the features are few and labels noisy, and a small
#: model predicts fast (compare's stacker runs on every row).
LGBM_PARAMS = dict(n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=40, subsample=0.8,
                   subsample_freq=1, colsample_bytree=0.9, reg_lambda=1.0, verbose=-1)


def make_classifier(name: str, n_margins: int, n_features: int, monotone: bool = True, random_state: int = 0):
    """A named base classifier: ``lightgbm`` or ``logistic``."""
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        constraints = [1] * n_margins + [0] * (n_features - n_margins) if monotone else None
        return LGBMClassifier(monotone_constraints=constraints, random_state=random_state, **LGBM_PARAMS)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=1000)
    raise ValueError(f"unknown stacker {name!r}: use 'lightgbm', 'logistic' or pass a scikit-learn classifier")


class SymmetricStacker(SymmetricModel, ClassifierMixin, BaseEstimator):
    """P(A closer) from stacking features whose first ``n_margins`` columns are member margins.

    ``estimator``: ``"lightgbm"``, ``"logistic"`` or any scikit-learn classifier with ``predict_proba``.
    ``swap_pairs``: column pairs that exchange under the swap (see :func:`swap_margins`).
    """

    def __init__(self, estimator="lightgbm", n_margins: int = 1, monotone: bool = True, random_state: int = 0,
                 swap_pairs=()):
        self.estimator = estimator
        self.n_margins = n_margins
        self.swap_pairs = swap_pairs
        self.monotone = monotone
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(int)
        if isinstance(self.estimator, str):
            base = make_classifier(self.estimator, self.n_margins, X.shape[1], self.monotone, self.random_state)
        else:
            base = clone(self.estimator)
        both = np.vstack([X, swap_margins(X, self.n_margins, self.swap_pairs)])
        labels = np.concatenate([y, 1 - y])
        weights = None if sample_weight is None else np.concatenate([sample_weight, sample_weight])
        self.estimator_ = base.fit(both, labels, sample_weight=weights)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

