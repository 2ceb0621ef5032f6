"""Compiled stacker prediction (lleaves): bit-for-bit LightGBM's own predictions, cached once per model,
and LightGBM itself whenever compiling fails or small inputs make compiling not worth it."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.ensemble import compiled
from ctxsim.ensemble.compiled import (
    BoosterPredictor,
    CompiledPredictor,
    FastBooster,
    compiled_predictor,
)
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.selection import StackerCombiner
from ctxsim.ensemble.stackers import LGBM_PARAMS
from ctxsim.ensemble.symmetric import SymmetricModel

N_MEMBERS, N_CONTEXTS = 4, 3


def stacker_inputs(n: int, seed: int) -> tuple[EnsembleInputs, np.ndarray]:
    """Margins of four members (two informative), a soft membership over three contexts, labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    truth = (2 * y - 1) * rng.uniform(0.0, 0.2, n)
    margins = np.column_stack([truth + rng.normal(0, s, n) for s in (0.05, 0.1, 0.3, 1.0)]).astype(np.float32)
    logits = rng.normal(0, 3, (n, N_CONTEXTS))
    membership = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return EnsembleInputs(margins, membership.astype(np.float32), [f"m{i}" for i in range(N_MEMBERS)]), y


def awkward_rows(X: np.ndarray, seed: int = 3) -> np.ndarray:
    """Real-looking rows plus exact zeros, values LightGBM reads as zero (|x| <= 1e-35), NaNs and huge values."""
    rng = np.random.default_rng(seed)
    odd = X[:400].copy()
    odd[:100] = 0.0
    odd[100:200] *= np.float32(1e-36)
    odd[200:300, rng.integers(0, X.shape[1], 100)] = np.nan
    odd[300:400] *= 1e6
    return np.vstack([X, odd])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One object-code cache for the module: the model is compiled once (a few seconds), then loaded."""
    return tmp_path_factory.mktemp("compiled-cache")


@pytest.fixture(scope="module")
def fitted():
    x, y = stacker_inputs(6000, seed=0)
    combiner = StackerCombiner("lightgbm", val_accuracy=np.full((N_MEMBERS, N_CONTEXTS), 0.7)).fit(x, y)
    return combiner


def test_compiled_forest_gives_lightgbms_predictions_bit_for_bit(fitted, cache_dir):
    booster = fitted.model_.estimator_.booster_
    assert booster.num_trees() == LGBM_PARAMS["n_estimators"]
    predictor = compiled_predictor(booster, cache_dir)
    assert isinstance(predictor, CompiledPredictor)
    x, _ = stacker_inputs(50_000, seed=1)
    from ctxsim.ensemble.features import stacking_features

    X = awkward_rows(stacking_features(x, fitted.val_accuracy))
    for rows in (X, X[:1], X[:3]):
        np.testing.assert_array_equal(predictor.predict(rows), booster.predict(rows))
    # the check rows that guard every compiled model touch both sides of the model's splits
    check = compiled.check_rows(booster)
    np.testing.assert_array_equal(predictor.predict(check), booster.predict(check))


def test_a_loaded_stacker_predicts_exactly_as_the_fitted_one(fitted, cache_dir, monkeypatch):
    monkeypatch.setenv("CTXSIM_CACHE", str(cache_dir))
    loaded = StackerCombiner(val_accuracy=fitted.val_accuracy)
    loaded.load_state(fitted.state())
    x, _ = stacker_inputs(60_001, seed=2)  # several row blocks, the last one short
    from ctxsim.ensemble.features import stacking_features

    # the scikit-learn LGBMClassifier the run was fitted with, on the whole input at once
    expected = fitted.model_.predict_proba(stacking_features(x, fitted.val_accuracy))[:, 1]
    got = loaded.predict_proba(x)  # compiled trees, in row blocks on threads
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(fitted.predict_proba(x), expected)
    fast = loaded.model_.estimator_.fast_
    assert isinstance(fast.predictor, CompiledPredictor)  # large inputs ran compiled
    assert len(list((cache_dir / compiled.CACHE_SUBDIR).glob("*.o"))) == 1
    # swapping A and B still gives exactly 1 - p
    swapped = loaded.predict_proba(x.swapped())
    np.testing.assert_allclose(swapped, 1.0 - got, rtol=0, atol=1e-12)


def test_compiled_code_is_cached_and_reused(fitted, cache_dir, monkeypatch):
    booster = fitted.model_.estimator_.booster_
    first = compiled_predictor(booster, cache_dir)
    objects = list((cache_dir / compiled.CACHE_SUBDIR).glob("*.o"))
    assert len(objects) == 1 and objects[0].stat().st_size > 0

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again although the object code is cached")

    import lleaves.compiler

    monkeypatch.setattr(lleaves.compiler, "compile_to_module", no_compiling)
    second = compiled_predictor(booster, cache_dir)
    assert isinstance(second, CompiledPredictor)
    X = compiled.check_rows(booster, seed=5)
    np.testing.assert_array_equal(second.predict(X), first.predict(X))


def test_small_inputs_never_compile(fitted, tmp_path):
    booster = fitted.model_.estimator_.booster_
    fast = FastBooster(booster.model_to_string(), tmp_path)
    X = compiled.check_rows(booster, n=compiled.COMPILE_MIN_ROWS - 1)
    np.testing.assert_array_equal(fast.predict(X), booster.predict(X))  # numpy trees (ensemble/trees.py)
    assert not (tmp_path / compiled.CACHE_SUBDIR).exists() and fast._booster is None  # LightGBM not even built


def test_falls_back_to_lightgbm_when_compiling_fails(fitted, tmp_path, monkeypatch, caplog):
    import lleaves

    def broken(self, *args, **kwargs):
        raise RuntimeError("no LLVM today")

    monkeypatch.setattr(lleaves.Model, "compile", broken)
    booster = fitted.model_.estimator_.booster_
    predictor = compiled_predictor(booster, tmp_path)
    assert isinstance(predictor, BoosterPredictor)
    assert "could not be compiled" in caplog.text and "no LLVM today" in caplog.text
    X = compiled.check_rows(booster)
    np.testing.assert_array_equal(predictor.predict(X), booster.predict(X))


def test_falls_back_when_the_compiled_model_disagrees(fitted, cache_dir, monkeypatch, caplog):
    booster = fitted.model_.estimator_.booster_
    real = CompiledPredictor.predict
    monkeypatch.setattr(CompiledPredictor, "predict", lambda self, X: real(self, X) + 1e-12)
    predictor = compiled_predictor(booster, cache_dir)
    assert isinstance(predictor, BoosterPredictor)
    assert "differs" in caplog.text


def test_symmetric_stacker_on_compiled_trees_matches_scikit_learn(fitted, cache_dir, monkeypatch):
    """The whole symmetric prediction ((f(x) + 1 - f(swap x)) / 2), loaded and compiled vs as fitted."""
    monkeypatch.setenv("CTXSIM_CACHE", str(cache_dir))
    from ctxsim.ensemble.features import stacking_features

    x, _ = stacker_inputs(40_000, seed=4)
    X = stacking_features(x, fitted.val_accuracy)
    loaded = StackerCombiner(val_accuracy=fitted.val_accuracy)
    loaded.load_state(fitted.state())
    assert isinstance(loaded.model_, SymmetricModel)
    np.testing.assert_array_equal(loaded.model_.predict_proba(X), fitted.model_.predict_proba(X))
