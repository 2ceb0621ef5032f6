"""Cell tables: LightGBM's ``pred_contrib`` from one lookup per tree, checked against LightGBM itself on
rows at every split threshold, awkward values and a fitted stacker's features; and LightGBM answers
whenever a model has no tables."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from ctxsim.ensemble import compiled, tree_contributions
from ctxsim.ensemble.features import stacking_features
from ctxsim.ensemble.selection import StackerCombiner
from ctxsim.ensemble.tree_contributions import CellTables, cell_tables
from ctxsim.ensemble.trees import TreeModel
from ctxsim.native import CACHE_SUBDIR
from tests.ensemble.test_compiled import (
    N_CONTEXTS,
    N_MEMBERS,
    awkward_rows,
    stacker_inputs,
)

TOLERANCE = 1e-12  # the tables add LightGBM's per-tree numbers in the booster's order: equal to rounding


@pytest.fixture(scope="module")
def fitted():
    x, y = stacker_inputs(6000, seed=0)
    return StackerCombiner("lightgbm", val_accuracy=np.full((N_MEMBERS, N_CONTEXTS), 0.7)).fit(x, y)


@pytest.fixture(scope="module")
def booster(fitted):
    return fitted.model_.estimator_.booster_


@pytest.fixture(scope="module")
def tables(booster):
    found = cell_tables(TreeModel(booster.model_to_string()), booster, compiled.check_rows(booster))
    assert isinstance(found, CellTables)
    return found


def features(fitted, n: int, seed: int) -> np.ndarray:
    x, _ = stacker_inputs(n, seed)
    return awkward_rows(np.asarray(stacking_features(x, fitted.val_accuracy), dtype=np.float32))


def test_tables_give_lightgbms_contributions(fitted, booster, tables):
    X = features(fitted, 20_000, seed=1)  # real-looking rows, zeros, near zeros (read as 0), NaNs, huge values
    expected = booster.predict(X.astype(np.float64), pred_contrib=True)
    for threads in (1, 2):
        got = tables.contributions(X, threads=threads)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    # every split threshold, just below and just above: both sides of every split of every tree
    check = compiled.check_rows(booster, n=4096, seed=7).astype(np.float32)
    np.testing.assert_allclose(tables.contributions(check), booster.predict(check.astype(np.float64), pred_contrib=True),
                               rtol=0, atol=TOLERANCE)
    # each row sums (with the bias) to the raw score, as LightGBM's do
    np.testing.assert_allclose(tables.contributions(X).sum(axis=1), booster.predict(X, raw_score=True), rtol=0, atol=1e-9)


def test_half_difference_is_the_symmetric_contribution(fitted, booster, tables):
    X = features(fitted, 3000, seed=2)
    other = X[::-1].copy()
    expected = 0.5 * (booster.predict(X, pred_contrib=True) - booster.predict(other, pred_contrib=True))
    np.testing.assert_allclose(tables.half_difference(X, other), expected, rtol=0, atol=TOLERANCE)


def test_features_that_are_not_float32_values_are_refused(tables):
    X = np.full((2, tables.n_features), 0.1, dtype=np.float64)  # 0.1 is not a float32
    with pytest.raises(ValueError, match="float32"):
        tables.contributions(X)
    assert tables.contributions(X.astype(np.float32)).shape == (2, tables.n_features + 1)


def test_models_without_tables_leave_lightgbm_to_answer(booster, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    trees = TreeModel(booster.model_to_string())
    check = compiled.check_rows(booster)
    monkeypatch.setattr(tree_contributions, "MAX_CELLS", 10)
    assert cell_tables(trees, booster, check) is None and "cells exceed" in caplog.text
    monkeypatch.undo()
    trees.missing = trees.missing.copy()
    trees.missing[0] = 2  # a split that sends NaNs its own way: the cells would not say where a NaN goes
    assert cell_tables(trees, booster, check) is None and "missing values" in caplog.text


def test_tables_that_disagree_are_not_used(booster, monkeypatch, caplog):
    real = CellTables.add_contributions
    monkeypatch.setattr(CellTables, "add_contributions", lambda self, X, out, scale, threads=None: (real(self, X, out, scale, threads), out.__iadd__(1e-6)))
    assert cell_tables(TreeModel(booster.model_to_string()), booster, compiled.check_rows(booster)) is None
    assert "differ" in caplog.text


def test_a_loaded_stacker_explains_large_inputs_from_its_tables(fitted, monkeypatch, tmp_path):
    """The same contributions from the tables (large input) as from LightGBM (small input), A/B-symmetric."""
    monkeypatch.setenv("CTXSIM_CACHE", str(tmp_path))
    loaded = StackerCombiner(val_accuracy=fitted.val_accuracy)
    loaded.load_state(fitted.state())
    x, _ = stacker_inputs(compiled.TABLES_MIN_ROWS + 5, seed=4)
    values, bias = loaded.contributions(x)
    fast = loaded.model_.estimator_.fast_
    assert isinstance(fast._tables, CellTables)  # built by the large input
    small = StackerCombiner(val_accuracy=fitted.val_accuracy)
    small.load_state(fitted.state())
    head = x.subset(np.arange(500))
    expected_values, expected_bias = small.contributions(head)  # LightGBM's pred_contrib: too few rows for tables
    assert small.model_.estimator_.fast_._tables is None
    np.testing.assert_allclose(values[:500], expected_values, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(bias[:500], expected_bias, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(values.sum(axis=1) + bias, loaded.raw_score(x), rtol=0, atol=1e-9)
    swapped_values, _ = loaded.contributions(x.swapped())
    np.testing.assert_allclose(swapped_values.sum(axis=1), -values.sum(axis=1), rtol=0, atol=1e-9)


def test_grouped_contributions_are_the_sums_of_the_features_of_each_group(fitted, monkeypatch, tmp_path):
    """``--explain`` asks for group sums only: the tables add each tree's columns of a group once, and the
    result is the per-feature contributions summed by group (tables for a large input, LightGBM for a small one)."""
    from ctxsim.ensemble.explain import group_columns

    monkeypatch.setenv("CTXSIM_CACHE", str(tmp_path))
    loaded = StackerCombiner(val_accuracy=fitted.val_accuracy)
    loaded.load_state(fitted.state())
    x, _ = stacker_inputs(compiled.TABLES_MIN_ROWS + 5, seed=5)
    values, bias = loaded.contributions(x)
    n = values.shape[1]
    columns = (*[j % 3 for j in range(n)], 3)  # features into 3 groups, the bias into its own column
    for rows in (x, x.subset(np.arange(300))):
        grouped, grouped_bias = loaded.contributions(rows, columns=columns)
        full_values, full_bias = values[: len(rows)], bias[: len(rows)]
        assert grouped.shape == (len(rows), 3)
        np.testing.assert_allclose(grouped, group_columns(full_values, columns[:-1]), rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(grouped_bias, full_bias, rtol=0, atol=TOLERANCE)


def test_compiled_lookups_are_cached_and_reused(booster, tmp_path, monkeypatch):
    """The second build of the same model's tables loads the object code: nothing is parsed or optimised."""
    import llvmlite.binding as llvm

    trees, check = TreeModel(booster.model_to_string()), compiled.check_rows(booster)
    first = cell_tables(trees, booster, check, tmp_path)
    objects = list((tmp_path / CACHE_SUBDIR).glob("cells-*.o"))
    assert len(objects) == 1 and objects[0].stat().st_size > 0

    def no_optimising(*args, **kwargs):
        raise AssertionError("optimised again although the object code is cached")

    monkeypatch.setattr(llvm, "create_module_pass_manager", no_optimising)
    second = cell_tables(trees, booster, check, tmp_path)
    assert isinstance(second, CellTables)
    np.testing.assert_array_equal(second.contributions(check.astype(np.float32)), first.contributions(check.astype(np.float32)))
