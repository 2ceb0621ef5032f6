"""The paper's ensembles on hand-made inputs: majority vote, the single best member, the PCA
credibility map and the per-member MLP accuracy weights."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.ensemble.baselines import MLPWeighted, MajorityVote, PCACredibility, SingleMember, fit_scale
from ctxsim.ensemble.inputs import EnsembleInputs

NAMES = ["left", "right", "so-so"]
DIM = 5


def inputs(margins, ref_emb=None, ref_id=None, names=None) -> EnsembleInputs:
    margins = np.asarray(margins, dtype=float)
    return EnsembleInputs(margins, np.ones((len(margins), 1)), names or [f"m{j}" for j in range(margins.shape[1])], ref_emb, ref_id)


def two_regions(n_refs: int, rows_per_ref: int, seed: int) -> tuple[EnsembleInputs, np.ndarray, np.ndarray]:
    """References lie in two clearly separated regions of the embedding space. Member 'left' is right
    only for references on the left, 'right' only on the right (a coin toss elsewhere), 'so-so' is
    right 60 % of the time everywhere. Returns the inputs, y (1: A closer) and which side each row is on."""
    rng = np.random.default_rng(seed)
    side_of_ref = np.arange(n_refs) % 2  # 0: left, 1: right
    centre = np.where(side_of_ref[:, None] == 0, -1.0, 1.0) * np.eye(DIM)[0]
    emb = centre + 0.15 * rng.normal(size=(n_refs, DIM))
    ref = np.repeat(np.arange(n_refs), rows_per_ref)
    side = side_of_ref[ref]
    n = len(ref)
    y = rng.integers(0, 2, n)
    truth = 2 * y - 1
    coin = rng.choice([-1, 1], size=(n, 2))
    left = np.where(side == 0, truth, coin[:, 0])
    right = np.where(side == 1, truth, coin[:, 1])
    soso = np.where(rng.random(n) < 0.6, truth, -truth)
    margins = np.column_stack([left, right, soso]) * rng.uniform(0.02, 0.3, (n, 3))
    return EnsembleInputs(margins, np.ones((n, 1)), NAMES, emb[ref], ref), y, side


def assert_symmetric(combiner, x: EnsembleInputs) -> None:
    p = combiner.predict_proba(x)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(combiner.predict_proba(x.swapped()), 1.0 - p, rtol=0, atol=1e-12)


def test_majority_vote_by_hand():
    x = inputs([[0.1, 0.2, -0.3], [-0.1, -0.2, 0.3], [0.1, -0.1, 0.0], [-0.5, -0.1, -0.2], [0.0, 0.0, 0.0]])
    mv = MajorityVote()
    assert mv.fit(x, np.zeros(5)) is mv
    np.testing.assert_allclose(mv.predict_proba(x), [2 / 3, 1 / 3, 0.5, 0.0, 0.5])
    assert_symmetric(mv, x)


def test_fit_scale_is_platt_without_intercept():
    rng = np.random.default_rng(0)
    margin = rng.normal(0, 1, 5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-3.0 * margin))).astype(int)
    assert fit_scale(margin, y) == pytest.approx(3.0, rel=0.1)
    assert fit_scale(margin, np.ones(5000, int)) == 1.0  # one class only: no scaling learnt
    # weights: rows with weight 0 are ignored, here the ones that contradict the margin
    noisy = np.where(np.arange(5000) % 2, 1 - y, y)
    assert fit_scale(margin, noisy, np.where(np.arange(5000) % 2, 0.0, 1.0)) == pytest.approx(3.0, rel=0.1)


def test_single_member_picks_the_best_and_scales_it():
    x, y, _ = two_regions(40, 30, seed=0)
    x.margins[:, 2] = (2 * y - 1) * np.abs(x.margins[:, 2])  # 'so-so' becomes perfect
    best = SingleMember(name="best").fit(x, y)
    assert best.member == "so-so" and best.scale_ > 10  # a perfect member earns a steep sigmoid
    np.testing.assert_allclose(best.predict_proba(x), 1 / (1 + np.exp(-best.scale_ * x.margins[:, 2])))
    assert_symmetric(best, x)
    fixed = SingleMember("left").fit(x, y)
    assert fixed.member == "left" and fixed.name == "member:left" and fixed.scale_ > 0
    back = SingleMember(name="best")
    back.load_state(best.state())
    np.testing.assert_array_equal(back.predict_proba(x), best.predict_proba(x))


def test_pca_credibility_trusts_a_member_only_where_it_is_right():
    x, y, side = two_regions(60, 40, seed=1)
    pca = PCACredibility(grid=8, sigma=1.0).fit(x, y)
    i, j = pca._cells(x.ref_emb)
    cred = pca.maps_[:, i, j].T  # (n, 3): each member's credibility where each row's reference lies
    left_rows, right_rows = side == 0, side == 1
    assert cred[left_rows, 0].min() > 0.9 and cred[right_rows, 0].max() < 0.6
    assert cred[right_rows, 1].min() > 0.9 and cred[left_rows, 1].max() < 0.6
    # on new triplets it follows 'left' on the left and 'right' on the right
    x_new, y_new, side_new = two_regions(60, 20, seed=2)
    p = pca.predict_proba(x_new)
    assert np.mean((p >= 0.5) == (y_new == 1)) >= 0.97
    follows = np.where(side_new == 0, x_new.margins[:, 0], x_new.margins[:, 1]) > 0
    assert np.mean((p > 0.5) == follows) >= 0.97
    assert_symmetric(pca, x_new)
    back = PCACredibility(grid=8, sigma=1.0)
    back.load_state({k: np.asarray(v) for k, v in pca.state().items()})
    np.testing.assert_array_equal(back.predict_proba(x_new), p)


def test_mlp_weighted_learns_where_each_member_is_right():
    x, y, side = two_regions(60, 40, seed=3)
    mlp = MLPWeighted(hidden=16, pca_dims=4).fit(x, y)
    x_new, y_new, side_new = two_regions(60, 20, seed=4)
    acc = mlp._accuracy(mlp._project(x_new.ref_emb))  # predicted accuracy of each member per row
    left_rows, right_rows = side_new == 0, side_new == 1
    assert acc[left_rows, 0].mean() > 0.85 and acc[right_rows, 0].mean() < 0.65
    assert acc[right_rows, 1].mean() > 0.85 and acc[left_rows, 1].mean() < 0.65
    p = mlp.predict_proba(x_new)
    assert np.mean((p >= 0.5) == (y_new == 1)) >= 0.95
    assert_symmetric(mlp, x_new)
    back = MLPWeighted()
    back.load_state({k: np.asarray(v) for k, v in mlp.state().items()})
    np.testing.assert_array_equal(back.predict_proba(x_new), p)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_weighted_sklearn_forward_pass_matches():
    """The hand-written forward pass equals scikit-learn's own MLPRegressor.predict."""
    from sklearn.neural_network import MLPRegressor

    x, y, _ = two_regions(30, 10, seed=5)
    mlp = MLPWeighted(hidden=8, pca_dims=3, max_iter=300).fit(x, y)
    z = mlp._project(x.ref_emb)
    ref = MLPRegressor(hidden_layer_sizes=(8,))
    ref.coefs_, ref.intercepts_ = [w for w, _ in mlp.layers_[1]], [b for _, b in mlp.layers_[1]]
    ref.n_layers_, ref.out_activation_, ref.activation, ref.n_outputs_ = 3, "identity", "relu", 1
    ref.n_features_in_ = z.shape[1]
    np.testing.assert_allclose(mlp._accuracy(z)[:, 1], ref.predict(z), rtol=1e-10)


def test_members_with_no_credit_fall_back_to_equal_votes():
    # every member is a coin toss: no credibility anywhere, the vote is unweighted
    rng = np.random.default_rng(6)
    n = 400
    emb = rng.normal(size=(n, DIM))
    x = EnsembleInputs(rng.normal(size=(n, 3)), np.ones((n, 1)), NAMES, emb, np.arange(n))
    y = rng.integers(0, 2, n)
    pca = PCACredibility(threshold=0.99).fit(x, y)
    np.testing.assert_allclose(pca.predict_proba(x), MajorityVote().predict_proba(x))


@pytest.mark.parametrize("combiner", [MajorityVote(), SingleMember(name="best"), PCACredibility(), MLPWeighted(max_iter=200)],
                         ids=lambda c: type(c).__name__)
def test_every_baseline_is_symmetric(combiner):
    x, y, _ = two_regions(40, 10, seed=7)
    combiner.fit(x, y, sample_weight=np.linspace(0.5, 1.5, len(y)))
    assert_symmetric(combiner, x)
