"""The regime features: which images of a triplet were seen in training, swapped with A and B."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.ensemble.features import feature_names, stacking_features, swap_pairs
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.regime import KnownImages, seen_by
from ctxsim.ensemble.stackers import SymmetricStacker, swap_margins
from ctxsim.members.training import Triplets
from ctxsim.train.regimes import (
    both_regimes,
    image_fold_seen,
    triplet_fold_seen,
    triplet_folds,
)


def test_swap_exchanges_the_paired_columns_and_flips_the_margins():
    X = np.array([[1.0, -2.0, 0.5, 1.0, 0.0]])
    np.testing.assert_array_equal(swap_margins(X, 2, ((3, 4),)), [[-1.0, 2.0, 0.5, 0.0, 1.0]])


def test_regime_features_by_hand_and_under_a_swap():
    x = EnsembleInputs(np.array([[0.1, -0.2]]), np.array([[1.0]]), ["m0", "m1"], seen=np.array([[1.0, 1.0, 0.0]]))
    f = stacking_features(x, np.array([[0.7], [0.6]]), regime=True)
    np.testing.assert_allclose(f, [[0.1, -0.2, 0.1, -0.2, 1.0, 0.7, 0.6, 1.0, 1.0, 0.0]], rtol=1e-6)
    assert feature_names(["m0", "m1"], ["c"], regime=True)[-3:] == ["seen_ref", "seen_a", "seen_b"]
    g = stacking_features(x.swapped(), np.array([[0.7], [0.6]]), regime=True)
    np.testing.assert_allclose(g, swap_margins(f, 4, swap_pairs(f.shape[1], True)), rtol=0)
    assert swap_pairs(10, False) == ()
    # no seen flags where the stacker wants them: every image counts as new
    np.testing.assert_array_equal(stacking_features(EnsembleInputs(x.margins, x.membership, x.member_names), np.ones((2, 1)), True)[:, -3:], 0)


@pytest.mark.parametrize("name", ["lightgbm", "logistic"])
def test_stacker_with_seen_features_is_exactly_symmetric_and_uses_them(name):
    rng = np.random.default_rng(0)
    n = 3000
    seen = rng.integers(0, 2, (n, 3)).astype(float)
    y = rng.integers(0, 2, n)
    # member 0 is right on known references, member 1 on new ones
    m0 = np.where(seen[:, 0] == 1, 2 * y - 1, rng.choice([-1, 1], n)) * rng.uniform(0.01, 0.3, n)
    m1 = np.where(seen[:, 0] == 0, 2 * y - 1, rng.choice([-1, 1], n)) * rng.uniform(0.01, 0.3, n)
    X = np.column_stack([m0, m1, seen]).astype(np.float32)
    stacker = SymmetricStacker(name, n_margins=2, swap_pairs=((3, 4),)).fit(X, y)
    p = stacker.predict_proba(X)[:, 1]
    np.testing.assert_allclose(stacker.predict_proba(swap_margins(X, 2, ((3, 4),)))[:, 1], 1 - p, atol=1e-12, rtol=0)
    if name == "lightgbm":  # a tree can follow member 0 on known references and member 1 on new ones
        assert np.mean((p >= 0.5) == y) > 0.95


def test_seen_flags_of_both_fold_kinds_by_hand():
    # images 0..3 in image folds [0, 1, 1, 2]; rows (ref, a, b)
    t = Triplets(np.array([0, 1, 3, 1]), np.array([1, 2, 1, 0]), np.array([2, 3, 2, 2]), np.ones(4))
    image_fold = np.array([0, 1, 1, 2])
    row_fold = image_fold[t.ref]  # [0, 1, 2, 1]
    # fold 0's copies train on the rows naming no 0 (rows 1, 2: images 1, 2, 3); fold 1's on rows naming
    # neither 1 nor 2 (none); fold 2's on rows naming no 3 (rows 0, 3: images 0, 1, 2)
    np.testing.assert_array_equal(image_fold_seen(t, image_fold, row_fold, 3), [[0, 1, 1], [0, 0, 0], [0, 1, 1], [0, 0, 0]])
    t2 = Triplets(np.array([0, 1, 1]), np.array([2, 3, 3]), np.array([1, 0, 2]), np.ones(3))
    # triplet folds: row fold [0, 1, 1]; fold 0 is scored by copies trained on rows 1, 2 (images 0, 1, 2, 3)
    np.testing.assert_array_equal(triplet_fold_seen(t2, np.array([0, 1, 1]), 2), [[1, 1, 1], [1, 0, 1], [1, 0, 1]])
    np.testing.assert_array_equal(seen_by(np.array([1, 2]), np.array([0, 1]), np.array([2, 3]), np.array([1, 1])), [[0, 1, 1], [1, 0, 1]])


def test_triplet_folds_are_balanced_and_seeded():
    folds = triplet_folds(10, 3, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [3, 3, 4]
    np.testing.assert_array_equal(folds, triplet_folds(10, 3, seed=0))


def test_both_regimes_stacks_the_two_sets_of_margins():
    x = EnsembleInputs(np.array([[0.1], [0.2]]), np.ones((2, 1)), ["m"], ref_id=np.array([5, 6]))
    both = both_regimes(x, np.zeros((2, 3)), np.array([[0.3], [0.4]]), np.ones((2, 3)))
    np.testing.assert_array_equal(both.margins[:, 0], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(both.ref_id, [5, 6, 5, 6])
    np.testing.assert_array_equal(both.seen[:, 0], [0, 0, 1, 1])
    np.testing.assert_array_equal(x.margins[:, 0], [0.1, 0.2])  # the input stays as it was


def test_known_images_flags_and_round_trip(tmp_path):
    known = KnownImages(["b", "a", "a"])
    assert known.digests == ["a", "b"]
    np.testing.assert_array_equal(known.flags(["a", "c", "b"]), [1.0, 0.0, 1.0])
    known.save(tmp_path / "known")
    assert KnownImages.load(tmp_path / "known").digests == ["a", "b"]
    assert KnownImages.load(tmp_path / "nothing") is None
