"""LightGBM text models evaluated in numpy: bit-for-bit the booster's answers, without importing LightGBM."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.ensemble.compiled import check_rows
from ctxsim.ensemble.stackers import LGBM_PARAMS
from ctxsim.ensemble.trees import TextModelError, TreeModel


def fitted_booster(n_features=6, missing=False, seed=0, **params):
    from lightgbm import LGBMClassifier

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, n_features)).astype(np.float32)
    X[::5, 1] = 0.0  # zeros LightGBM may route by its missing-value rule
    if missing:
        X[::7, 2] = np.nan
    y = (X[:, 0] + 0.5 * np.nan_to_num(X[:, 2]) + rng.normal(0, 0.5, len(X)) > 0).astype(int)
    return LGBMClassifier(**{**LGBM_PARAMS, **params}).fit(X, y).booster_


@pytest.mark.parametrize("missing", [False, True])
def test_predictions_are_those_of_the_booster_bit_for_bit(missing):
    booster = fitted_booster(missing=missing)
    model = TreeModel(booster.model_to_string())
    rng = np.random.default_rng(1)
    probes = [check_rows(booster), rng.normal(size=(500, 6)).astype(np.float32).astype(np.float64)]
    with_nan = probes[1].copy()
    with_nan[::3, 2] = np.nan
    probes.append(with_nan)
    for X in probes:
        np.testing.assert_array_equal(model.predict(X), booster.predict(X))
        np.testing.assert_array_equal(model.raw_score(X), booster.predict(X, raw_score=True))


def test_a_model_of_stumps_is_its_constant():
    booster = fitted_booster(n_estimators=3, min_child_samples=100_000)  # no split possible: one leaf per tree
    X = np.random.default_rng(2).normal(size=(10, 6))
    np.testing.assert_array_equal(TreeModel(booster.model_to_string()).predict(X), booster.predict(X))


def test_what_it_cannot_evaluate_is_refused():
    with pytest.raises(TextModelError, match="binary"):
        TreeModel("tree\nversion=v4\nobjective=regression\nmax_feature_idx=1\n")
    model = TreeModel(fitted_booster().model_to_string())
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((2, 5)))
