"""Explanations: contributions add up (with the bias) to what each combiner computes."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.ensemble.baselines import MajorityVote, SingleMember
from ctxsim.ensemble.explain import Explanation
from ctxsim.ensemble.features import (
    feature_groups,
    feature_names,
    group_of_feature,
    stacking_features,
)
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.selection import StackerCombiner
from ctxsim.ensemble.stackers import swap_margins

MEMBERS, CONTEXTS = ["zeroshot", "global", "context-x"], ["x", "y"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    margins = rng.normal(size=(600, 3))
    membership = rng.dirichlet([1, 1], size=600)
    y = (margins @ [1.0, 0.6, 0.3] * (1 + membership[:, 0]) + rng.normal(size=600) * 0.5 > 0).astype(int)
    return EnsembleInputs(margins, membership, MEMBERS), y


@pytest.mark.parametrize("estimator", ["lightgbm", "logistic"])
def test_stacker_contributions_sum_to_the_symmetric_raw_score(data, estimator):
    x, y = data
    val_accuracy = np.array([[0.6, 0.7], [0.8, 0.6], [0.9, 0.5]])
    fitted = StackerCombiner(estimator, val_accuracy).fit(x, y)
    loaded = StackerCombiner(estimator, val_accuracy)
    loaded.load_state(fitted.state())  # the run's stacker: a booster (compiled for speed) or coefficients
    for combiner in (fitted, loaded):
        values, bias = combiner.contributions(x)
        X = stacking_features(x, val_accuracy)
        base = combiner.model_.estimator_
        if estimator == "lightgbm":  # independently: LightGBM's raw scores on x and on its A/B swap
            raw = base.booster_.predict(X, raw_score=True), base.booster_.predict(swap_margins(X, 9), raw_score=True)
        else:
            raw = X.astype(float) @ base.coef_[0] + base.intercept_[0], swap_margins(X, 9).astype(float) @ base.coef_[0] + base.intercept_[0]
        expected = 0.5 * (raw[0] - raw[1])
        assert values.shape == (600, len(feature_names(MEMBERS, CONTEXTS)))
        np.testing.assert_allclose(values.sum(axis=1) + bias, expected, atol=1e-9)
        np.testing.assert_allclose(bias, 0.0)  # the base model's bias cancels in the symmetric score
        # swapping A and B negates every contribution
        swapped, _ = combiner.contributions(x.swapped())
        np.testing.assert_allclose(swapped, -values, atol=1e-9)
    if estimator == "logistic":  # a linear model's symmetric contribution is coef x feature on margins, 0 elsewhere
        np.testing.assert_allclose(values[:, 9:], 0.0, atol=1e-12)


def test_vote_and_single_member_contributions():
    x = EnsembleInputs(np.array([[0.2, -0.1, 0.3], [-0.2, -0.1, 0.0]]), np.ones((2, 1)), MEMBERS)
    values, bias = MajorityVote().contributions(x)
    np.testing.assert_allclose(values, [[1 / 6, -1 / 6, 1 / 6], [-1 / 6, -1 / 6, 0.0]])
    np.testing.assert_allclose(values.sum(axis=1) + bias, MajorityVote().predict_proba(x))  # 2/3 and 1/3
    single = SingleMember("global")
    single.scale_ = 4.0
    values, bias = single.contributions(x)
    np.testing.assert_allclose(values, [[0, -0.4, 0], [0, -0.4, 0]])
    p = single.predict_proba(x)
    np.testing.assert_allclose(values.sum(axis=1) + bias, np.log(p / (1 - p)))


def test_why_names_the_top_groups_by_absolute_contribution():
    features = feature_names(["a", "b"], ["x"])  # margin_a, margin_b, margin_a@x, margin_b@x, member_x, acc_a, acc_b
    groups = feature_groups(["a", "b"], ["x"])
    assert groups == ["a", "b", "a", "b", "membership:x", "a", "b"]
    values = np.array([[0.1, -0.3, 0.05, 0.0, 0.2, 0.0, 0.01]])
    e = Explanation(features, groups, values, np.zeros(1), "log-odds")
    assert e.why(2)[0] == "b -0.290; membership:x +0.200"
    assert e.why(3)[0] == "b -0.290; membership:x +0.200; a +0.150"
    single = Explanation(features, groups, np.array([[0.0, 1.5, 0.0, 0.2, 0.0, 0.0, 0.0]]), np.zeros(1), "log-odds")
    assert single.why(3)[0] == "b +1.700"  # nothing else moved the answer
    row = e.row(0, 3)
    assert row["total"] == pytest.approx(0.06) and list(row["groups"]) == ["b", "membership:x", "a"]


def test_group_of_feature_reads_back_every_feature_name():
    members, contexts = ["zeroshot", "global@lite0", "context-x@lite0"], ["x", "x-y"]
    for f, g in zip(feature_names(members, contexts), feature_groups(members, contexts)):
        assert group_of_feature(f, contexts) == g, f
