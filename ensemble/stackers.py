"""Stacking learners as scikit-learn estimators over :func:`stacking_features`.

:class:`SymmetricStacker` wraps any scikit-learn classifier (LightGBM by default, with monotone
constraints: a larger margin for A never lowers P(A)). It trains on every triplet and its A/B
swap, and predicts ``(f(x) + 1 - f(swap(x))) / 2``, so swapping A and B gives exactly ``1 - p_a``.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from ctxsim.schema import DECISION_THRESHOLD

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


def swap_margins(X: np.ndarray, n_margins: int, pairs=()) -> np.ndarray:
    """The features of the A/B-swapped triplets: the first ``n_margins`` columns change sign and each
    ``(i, j)`` of ``pairs`` (columns about A and about B, e.g. ``seen_a``, ``seen_b``) exchange."""
    out = np.array(X, copy=True)
    out[:, :n_margins] *= -1
    for i, j in pairs:
        out[:, [i, j]] = out[:, [j, i]]
    return out


class SymmetricStacker(ClassifierMixin, BaseEstimator):
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

    def _p_a(self, X: np.ndarray) -> np.ndarray:
        # float64: classifiers answer in their input's float32, which breaks the exact A/B symmetry
        return self.estimator_.predict_proba(X)[:, 1].astype(np.float64)

    def predict_proba(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        p = 0.5 * (self._p_a(X) + 1.0 - self._p_a(swap_margins(X, self.n_margins, self.swap_pairs)))
        return np.column_stack([1.0 - p, p])

    def contributions(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions (n, F) and bias (n,) in log-odds, symmetric like ``predict_proba``:
        half the difference of the base model's contributions on ``x`` and on ``swap(x)``, so they sum
        (with the bias, which cancels to 0) exactly to the symmetric raw score ``(f(x) - f(swap x)) / 2``.
        LightGBM: its exact tree contributions (``pred_contrib=True``) from the booster, never the
        compiled trees; a linear model: ``coef x feature``."""
        X = np.asarray(X, dtype=np.float32)
        both = [self._raw_contributions(X), self._raw_contributions(swap_margins(X, self.n_margins, self.swap_pairs))]
        half = 0.5 * (both[0] - both[1])
        return half[:, :-1], half[:, -1]

    def raw_score(self, X) -> np.ndarray:
        """The symmetric raw score ``(f(x) - f(swap x)) / 2`` in log-odds (what :meth:`contributions` add up to)."""
        X = np.asarray(X, dtype=np.float32)
        return 0.5 * (self._raw(X) - self._raw(swap_margins(X, self.n_margins, self.swap_pairs)))

    def _raw(self, X: np.ndarray) -> np.ndarray:
        est = self.estimator_
        if hasattr(est, "booster_"):
            return est.booster_.predict(X, raw_score=True, num_threads=0).astype(np.float64)
        return self._raw_contributions(X).sum(axis=1)

    def _raw_contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, F + 1): the base model's contributions and, last, its bias."""
        est = self.estimator_
        if hasattr(est, "booster_"):
            return np.asarray(est.booster_.predict(X, pred_contrib=True, num_threads=0), dtype=np.float64)
        if hasattr(est, "coef_"):
            coef = np.asarray(est.coef_, dtype=np.float64)[0]
            bias = np.full((len(X), 1), float(np.ravel(est.intercept_)[0]))
            return np.hstack([X.astype(np.float64) * coef, bias])
        raise TypeError(f"cannot explain a {type(est).__name__} stacker: use lightgbm or logistic")

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= DECISION_THRESHOLD).astype(int)
