"""The A/B-symmetric prediction of a stacker, apart from how it is fitted (torch- and scikit-learn-free).

A stacker sees each triplet and its A/B swap and answers ``(f(x) + 1 - f(swap(x))) / 2``, so swapping A
and B gives exactly ``1 - p_a``. :class:`SymmetricModel` is that rule over a fitted base model
``estimator_`` (anything with ``predict_proba``); :class:`ctxsim.ensemble.stackers.SymmetricStacker` adds
scikit-learn fitting, and a loaded run predicts with a :class:`SymmetricModel` over its saved trees or
coefficients (:class:`LinearModel`) — a compare never imports scikit-learn.
"""
from __future__ import annotations

import numpy as np

from ctxsim.ensemble.explain import group_columns
from ctxsim.schema import DECISION_THRESHOLD


def swap_margins(X: np.ndarray, n_margins: int, pairs=()) -> np.ndarray:
    """The features of the A/B-swapped triplets: the first ``n_margins`` columns change sign and each
    ``(i, j)`` of ``pairs`` (columns about A and about B, e.g. ``seen_a``, ``seen_b``) exchange."""
    out = np.array(X, copy=True)
    out[:, :n_margins] *= -1
    for i, j in pairs:
        out[:, [i, j]] = out[:, [j, i]]
    return out


class SymmetricModel:
    """P(A closer) from features whose first ``n_margins`` columns are member margins, symmetric under the
    A/B swap; ``swap_pairs``: column pairs that exchange under it (see :func:`swap_margins`)."""

    n_margins: int
    swap_pairs: tuple = ()
    estimator_: object

    @classmethod
    def fitted(cls, estimator, n_margins: int, swap_pairs=()) -> SymmetricModel:
        model = cls.__new__(cls)
        model.estimator_, model.n_margins, model.swap_pairs = estimator, n_margins, swap_pairs
        model.classes_ = np.array([0, 1])
        return model

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
        half = self.half_contributions(X)
        return half[:, :-1], half[:, -1]

    def half_contributions(self, X, columns: tuple[int, ...] | None = None) -> np.ndarray:
        """(n, F + 1): :meth:`contributions` and, last, the bias, in one array; with ``columns`` (each
        feature's output column, then the bias's) summed into those columns."""
        X = np.asarray(X, dtype=np.float32)
        swapped = swap_margins(X, self.n_margins, self.swap_pairs)
        if hasattr(self.estimator_, "fast_"):  # a loaded run: cell tables for large inputs (ensemble/tree_contributions.py)
            return self.estimator_.fast_.half_difference(X, swapped, columns)
        half = 0.5 * (self._raw_contributions(X) - self._raw_contributions(swapped))
        return half if columns is None else group_columns(half, columns)

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


class LinearModel:
    """A saved logistic model: ``predict_proba`` of coefficients and intercept, like scikit-learn's."""

    def __init__(self, coef, intercept):
        self.coef_, self.intercept_ = np.atleast_2d(np.asarray(coef)), np.ravel(np.asarray(intercept))  # dtypes as fitted
        self.classes_ = np.array([0, 1])

    def predict_proba(self, X) -> np.ndarray:
        from scipy.special import (
            expit,  # as scikit-learn computes it, so a loaded run answers identically
        )

        scores = np.asarray(X) @ self.coef_.T + self.intercept_.reshape(1, -1)
        p = expit(scores.ravel())
        return np.vstack([1 - p, p]).T
