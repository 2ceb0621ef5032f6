"""The ensemble of a run: stacking features, every combiner fitted, the answering one chosen by
image-grouped validation, Platt calibration, and a save/load round trip without pickles."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ctxsim.ensemble.selection import STACKER, Ensemble, StackerCombiner, _logit, make_combiners
from ctxsim.ensemble.config import EnsembleConfig
from ctxsim.ensemble.features import feature_names, n_signed, stacking_features
from ctxsim.ensemble.inputs import EnsembleInputs

MEMBERS = ["zeroshot", "global", "context-a", "context-b"]
CONTEXTS = ["a", "b"]
DIM = 4


def accuracy_table(x: EnsembleInputs, y: np.ndarray) -> np.ndarray:
    ctx = x.membership.argmax(axis=1)
    right = np.sign(x.margins) == (2 * y - 1)[:, None]
    return np.stack([[right[ctx == k, m].mean() for k in range(len(CONTEXTS))] for m in range(x.margins.shape[1])])


def synthetic(n_refs: int, rows_per_ref: int, seed: int) -> tuple[EnsembleInputs, np.ndarray]:
    """Two contexts; each context member is right in its own context and a coin toss in the other;
    zero-shot is right 70 % of the time, global 75 %. Membership is soft but clear."""
    rng = np.random.default_rng(seed)
    ctx_of_ref = np.arange(n_refs) % 2
    emb = np.where(ctx_of_ref[:, None] == 0, 1.0, -1.0) * np.eye(DIM)[0] + 0.2 * rng.normal(size=(n_refs, DIM))
    ref = np.repeat(np.arange(n_refs), rows_per_ref)
    ctx = ctx_of_ref[ref]
    n = len(ref)
    y = rng.integers(0, 2, n)
    truth = 2 * y - 1

    def right_with(p):
        return np.where(rng.random(n) < p, truth, -truth)

    cols = [right_with(0.70), right_with(0.75), np.where(ctx == 0, truth, right_with(0.5)), np.where(ctx == 1, truth, right_with(0.5))]
    margins = np.column_stack(cols) * rng.uniform(0.01, 0.3, (n, 4))
    p_a = np.clip(0.9 - 0.1 * rng.random(n), 0, 1)
    membership = np.where(ctx[:, None] == np.arange(2), p_a[:, None], 1 - p_a[:, None])
    return EnsembleInputs(margins, membership, MEMBERS, emb[ref], ref), y


@pytest.fixture(scope="module")
def data():
    x, y = synthetic(60, 25, seed=0)
    acc = accuracy_table(x, y)
    acc[0, 1] = np.nan  # a member never validated on a context
    return x, y, acc, x.ref_id % 4  # groups: image folds of the references


@pytest.fixture(scope="module")
def fitted(data):
    """The default ensemble (LightGBM stacker, chosen by validation) and its out-of-fold predictions."""
    x, y, acc, groups = data
    return Ensemble.fit(x, y, np.ones(len(y)), groups, acc, CONTEXTS, EnsembleConfig(folds=4))


@pytest.fixture(scope="module")
def forced(data):
    """A logistic stacker, majority vote forced to answer."""
    x, y, acc, groups = data
    return Ensemble.fit(x, y, np.ones(len(y)), groups, acc, CONTEXTS, EnsembleConfig(folds=4, stacker="logistic", select="majority_vote"))[0]


def test_stacking_features_by_hand():
    x = EnsembleInputs(np.array([[0.1, -0.2], [0.3, 0.4]]), np.array([[1.0, 0.0], [0.25, 0.75]]), ["m0", "m1"])
    acc = np.array([[0.9, 0.6], [np.nan, 0.8]])  # (M, K); NaN: the member was never validated there
    f = stacking_features(x, acc)
    expected = [
        # margins | margin x membership (m0@a, m0@b, m1@a, m1@b) | membership | expected accuracy
        [0.1, -0.2, 0.1, 0.0, -0.2, 0.0, 1.0, 0.0, 0.9, 0.5],
        [0.3, 0.4, 0.075, 0.225, 0.1, 0.3, 0.25, 0.75, 0.25 * 0.9 + 0.75 * 0.6, 0.25 * 0.5 + 0.75 * 0.8],
    ]
    np.testing.assert_allclose(f, expected, rtol=1e-6)
    assert f.dtype == np.float32 and n_signed(2, 2) == 6
    # the signed block is exactly what changes sign when A and B swap
    np.testing.assert_allclose(stacking_features(x.swapped(), acc), np.hstack([-f[:, :6], f[:, 6:]]))
    assert feature_names(["m0", "m1"], ["a", "b"]) == ["margin_m0", "margin_m1", "margin_m0@a", "margin_m0@b", "margin_m1@a",
                                                       "margin_m1@b", "member_a", "member_b", "acc_m0", "acc_m1"]


def test_inputs_swapped_and_subset():
    x, _ = synthetic(4, 2, seed=1)
    s = x.swapped()
    np.testing.assert_array_equal(s.margins, -x.margins)
    assert s.membership is x.membership and s.ref_emb is x.ref_emb
    sub = x.subset(np.array([0, 3]))
    assert len(sub) == 2 and list(sub.ref_id) == [x.ref_id[0], x.ref_id[3]]


@pytest.mark.parametrize("estimator", ["lightgbm", "logistic"])
def test_stacker_combiner_trusts_each_context_member_in_its_context(data, estimator):
    x, y, acc, _ = data
    stacker = StackerCombiner(estimator, acc).fit(x, y)
    x_new, y_new = synthetic(40, 25, seed=2)
    p = stacker.predict_proba(x_new)
    assert np.mean((p >= 0.5) == (y_new == 1)) >= 0.95
    ctx = x_new.membership.argmax(axis=1)
    own = np.where(ctx == 0, x_new.margins[:, 2], x_new.margins[:, 3])
    assert np.mean((p >= 0.5) == (own > 0)) >= 0.95
    np.testing.assert_allclose(stacker.predict_proba(x_new.swapped()), 1 - p, atol=1e-12)


def test_fit_selects_by_image_grouped_validation(data, fitted):
    x, y, acc, groups = data
    ens, cv_pred = fitted
    sel = ens.selection
    assert set(sel["cv_accuracy"]) == set(make_combiners(EnsembleConfig(), acc)) == set(cv_pred) == set(ens.combiners)
    assert sel["folds"] == 4
    cv = sel["cv_accuracy"]
    assert cv[STACKER] >= 0.95 and cv["zeroshot"] == pytest.approx(0.70, abs=0.04)
    assert cv["majority_vote"] < cv[STACKER] - 0.05
    assert ens.chosen == max(cv, key=lambda n: (round(cv[n], 4), n == STACKER))
    assert ens.chosen in sel["note"]
    # cv_pred are the calibrated out-of-fold predictions, and cv_accuracy is read off them
    for name, p in cv_pred.items():
        assert p.shape == y.shape and not np.isnan(p).any()
        assert np.mean((p >= 0.5) == (y == 1)) == pytest.approx(cv[name], abs=1e-9)
    # vote shares are Platt-calibrated; the others are probabilities already
    assert set(ens.calibration) == {"majority_vote", "pca_credibility", "mlp_weighted"}
    assert all(s > 0 for s in ens.calibration.values())


def test_folds_are_grouped_by_image(data, monkeypatch):
    """No combiner is validated on a reference image it was fitted on."""
    x, y, acc, groups = data
    seen = []
    original = StackerCombiner.fit

    def spy(self, xs, ys, ws=None):
        seen.append(set(xs.ref_id.tolist()))
        return original(self, xs, ys, ws)

    monkeypatch.setattr(StackerCombiner, "fit", spy)
    predicted = []
    original_predict = StackerCombiner.predict_proba

    def spy_predict(self, xs):
        predicted.append(set(xs.ref_id.tolist()))
        return original_predict(self, xs)

    monkeypatch.setattr(StackerCombiner, "predict_proba", spy_predict)
    Ensemble.fit(x, y, np.ones(len(y)), groups, acc, CONTEXTS, EnsembleConfig(folds=4))
    assert len(seen) == 5  # four folds, then the final fit on everything
    for fitted, scored in zip(seen[:4], predicted[:4]):
        assert fitted and scored and not fitted & scored
    assert seen[4] == set(x.ref_id.tolist())


def test_forced_choice_and_calibrated_symmetric_predictions(data, forced):
    x = data[0]
    ens = forced
    assert ens.chosen == "majority_vote" and not ens.needs_embeddings
    scale = ens.calibration["majority_vote"]
    raw = ens.combiners["majority_vote"].predict_proba(x)
    np.testing.assert_allclose(ens.predict(x), 1 / (1 + np.exp(-scale * _logit(raw))), rtol=1e-12)
    np.testing.assert_allclose(_logit(np.array([0.5, 0.8, 1.0])), [0.0, np.log(4.0), np.log((1 - 1e-6) / 1e-6)])
    np.testing.assert_allclose(ens.predict(x.swapped()), 1 - ens.predict(x), atol=1e-12)
    for name, p in ens.predict_all(x.swapped()).items():
        np.testing.assert_allclose(p, 1 - ens.predict_all(x)[name], atol=1e-12, err_msg=name)
    # without reference embeddings, the map baselines are left out
    no_emb = EnsembleInputs(x.margins, x.membership, x.member_names)
    assert set(ens.predict_all(no_emb)) == set(ens.combiners) - {"pca_credibility", "mlp_weighted"}


@pytest.mark.parametrize("stacker", ["lightgbm", "logistic"])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, fitted, forced, stacker):
    ens = fitted[0] if stacker == "lightgbm" else forced
    ens.save(tmp_path / "ensemble")
    files = sorted(p.name for p in (tmp_path / "ensemble").iterdir())
    assert "ensemble.json" in files and all(f == "ensemble.json" or f.endswith(".safetensors") for f in files)
    meta = json.loads((tmp_path / "ensemble" / "ensemble.json").read_text())
    if stacker == "lightgbm":  # the booster is kept as LightGBM's own text model
        assert meta["combiners"][STACKER]["format"] == "lightgbm" and meta["combiners"][STACKER]["model"].startswith("tree")
    assert meta["feature_names"] == feature_names(MEMBERS, CONTEXTS)

    back = Ensemble.load(tmp_path / "ensemble")
    assert back.chosen == ens.chosen and back.member_names == MEMBERS and back.context_names == CONTEXTS
    assert back.calibration == ens.calibration and back.selection == ens.selection
    np.testing.assert_array_equal(back.val_accuracy, ens.val_accuracy)
    x_new, _ = synthetic(20, 10, seed=3)
    np.testing.assert_array_equal(back.predict(x_new), ens.predict(x_new))
    before, after = ens.predict_all(x_new), back.predict_all(x_new)
    assert set(after) == set(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
