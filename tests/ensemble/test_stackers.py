"""The symmetric stacker: a scikit-learn estimator that learns whom to follow, answers ``1 - p`` when A
and B swap, and (LightGBM) never lowers P(A) when a member's margin for A grows."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.naive_bayes import GaussianNB

from ctxsim.ensemble.stackers import SymmetricStacker, make_classifier, swap_margins

STACKERS = ["lightgbm", "logistic"]


def perfect_and_random(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Column 0: a perfect member (its margin's sign is the label); column 1: a random member."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    perfect = (2 * y - 1) * rng.uniform(0.01, 0.3, n)
    random = rng.normal(0, 0.2, n)
    return np.column_stack([perfect, random]).astype(np.float32), y


@pytest.mark.parametrize("name", STACKERS)
def test_stacker_follows_the_perfect_member(name):
    X, y = perfect_and_random(1200, seed=0)
    stacker = SymmetricStacker(name, n_margins=2).fit(X, y)
    X_new, y_new = perfect_and_random(600, seed=1)
    p = stacker.predict_proba(X_new)[:, 1]
    assert np.mean((p >= 0.5) == (X_new[:, 0] > 0)) >= 0.98  # sides with the perfect member
    assert np.mean(stacker.predict(X_new) == y_new) >= 0.98
    # the random member's margin hardly matters: flipping it leaves the answers alone
    flipped = X_new.copy()
    flipped[:, 1] *= -1
    assert np.mean(stacker.predict(flipped) == stacker.predict(X_new)) >= 0.97
    # and the random member alone is useless
    alone = SymmetricStacker(name, n_margins=1).fit(X[:, 1:], y)
    assert np.mean(alone.predict(X_new[:, 1:]) == y_new) < 0.6


@pytest.mark.parametrize("name", [*STACKERS, "custom"])
def test_swapping_a_and_b_gives_one_minus_p(name):
    rng = np.random.default_rng(2)
    X, y = perfect_and_random(400, seed=2)
    X = np.column_stack([X, rng.random((400, 2))])  # two context features that do not flip with a swap
    estimator = GaussianNB() if name == "custom" else name
    stacker = SymmetricStacker(estimator, n_margins=2).fit(X, y)
    p = stacker.predict_proba(X)
    p_swapped = stacker.predict_proba(swap_margins(X, 2))
    np.testing.assert_allclose(p_swapped[:, 1], 1.0 - p[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # a zero margin everywhere (no member prefers either) gives exactly 1/2
    zero = X.copy()
    zero[:, :2] = 0
    np.testing.assert_allclose(stacker.predict_proba(zero)[:, 1], 0.5, atol=1e-12)


def test_swap_margins_flips_only_the_margin_columns():
    X = np.array([[1.0, -2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(swap_margins(X, 2), [[-1.0, 2.0, 3.0, 4.0]])
    assert X[0, 0] == 1.0  # a copy


def wiggly(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels that *fall* with the margin in a band: an unconstrained model follows that dip."""
    rng = np.random.default_rng(seed)
    m = rng.uniform(-1, 1, n)
    p = np.where((m > 0.2) & (m < 0.6), 0.1, 1 / (1 + np.exp(-6 * m)))
    y = (rng.random(n) < p).astype(int)
    return np.column_stack([m, rng.normal(size=n)]).astype(np.float32), y


def dips(stacker, column: int, grid: np.ndarray, others: np.ndarray) -> float:
    """Largest drop of P(A) while the ``column`` margin rises over ``grid`` (other features fixed)."""
    worst = 0.0
    for row in others:
        X = np.repeat(row[None], len(grid), axis=0)
        X[:, column] = grid
        p = stacker.predict_proba(X)[:, 1]
        worst = max(worst, float(np.max(p[:-1] - p[1:])))
    return worst


def test_monotone_constraint_is_respected():
    X, y = wiggly(4000, seed=3)
    grid = np.linspace(-1, 1, 81, dtype=np.float32)
    others = X[:20]
    free = SymmetricStacker("lightgbm", n_margins=1, monotone=False).fit(X, y)
    assert dips(free, 0, grid, others) > 0.05  # the data do pull towards a dip
    constrained = SymmetricStacker("lightgbm", n_margins=1, monotone=True).fit(X, y)
    assert dips(constrained, 0, grid, others) <= 1e-12
    # the constraint covers the margins only: the second column is not a margin and is free
    assert constrained.estimator_.get_params()["monotone_constraints"] == [1, 0]


def test_sample_weight_decides_whom_to_follow():
    """Member 0 is right on the first half of the rows, member 1 on the second; weights pick the half."""
    rng = np.random.default_rng(4)
    n = 1000
    y = rng.integers(0, 2, n)
    sign = 2 * y - 1
    m0 = np.where(np.arange(n) < n // 2, sign, -sign) * rng.uniform(0.05, 0.3, n)
    m1 = np.where(np.arange(n) < n // 2, -sign, sign) * rng.uniform(0.05, 0.3, n)
    X = np.column_stack([m0, m1]).astype(np.float32)
    first = (np.arange(n) < n // 2).astype(float)
    probe = np.array([[0.2, -0.2]], dtype=np.float32)  # member 0 says A, member 1 says B
    for name in STACKERS:
        assert SymmetricStacker(name, n_margins=2).fit(X, y, sample_weight=first).predict(probe)[0] == 1
        assert SymmetricStacker(name, n_margins=2).fit(X, y, sample_weight=1 - first).predict(probe)[0] == 0


def test_scikit_learn_estimator_conventions():
    stacker = SymmetricStacker("logistic", n_margins=3, monotone=False, random_state=5)
    assert stacker.get_params() == {"estimator": "logistic", "n_margins": 3, "monotone": False, "random_state": 5, "swap_pairs": ()}
    assert not any(k.endswith("_") for k in vars(stacker))  # __init__ stores parameters only
    copy = clone(stacker)
    assert copy.get_params() == stacker.get_params() and copy is not stacker
    X, y = perfect_and_random(100, seed=6)
    X = np.column_stack([X, X[:, :1]])
    assert stacker.fit(X, y) is stacker  # fit returns self
    assert stacker.n_features_in_ == 3 and list(stacker.classes_) == [0, 1]
    assert stacker.score(X, y) > 0.9  # ClassifierMixin
    assert not hasattr(clone(stacker), "estimator_")


def test_make_classifier():
    lgbm = make_classifier("lightgbm", n_margins=2, n_features=5)
    assert lgbm.get_params()["monotone_constraints"] == [1, 1, 0, 0, 0]
    assert make_classifier("lightgbm", 2, 5, monotone=False).get_params()["monotone_constraints"] is None
    assert type(make_classifier("logistic", 2, 5)).__name__ == "LogisticRegression"
    with pytest.raises(ValueError, match="unknown stacker 'svm'"):
        make_classifier("svm", 2, 5)
