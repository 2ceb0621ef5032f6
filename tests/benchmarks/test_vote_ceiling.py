"""The oracle ceiling of benchmarks/vote_ceiling.py against numbers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import vote_ceiling


def test_ceiling_of_uniform_preferences_by_hand():
    # p uniform on [0, 1]: E[max(p, 1 - p)] = 3/4. One vote a row: the vote is on p's side with that chance too.
    # Three votes a row: P(majority on p's side) = p^3 + 3 p^2 (1 - p) for p > 1/2, integrated over (1/2, 1] and
    # doubled: 2 * [p^3 - p^4 / 2] from 1/2 to 1 = 2 * 13/32 = 13/16.
    grid, weights = vote_ceiling.beta_distribution(1.0, 1.0, grid_points=2001)
    one = vote_ceiling.ceilings(grid, weights, np.ones(10, dtype=int))
    three = vote_ceiling.ceilings(grid, weights, np.full(10, 3))
    assert one["vote_agreement"] == pytest.approx(0.75, abs=1e-4)
    assert one["majority_accuracy"] == pytest.approx(0.75, abs=1e-4)
    assert three["majority_accuracy"] == pytest.approx(13 / 16, abs=1e-4)


def test_unanimous_votes_have_a_ceiling_of_one():
    votes_a = np.array([4, 0, 3, 0, 5])
    votes_b = np.array([0, 4, 0, 3, 0])
    k, n = vote_ceiling.oriented_votes(votes_a, votes_b)
    npmle = vote_ceiling.fit_npmle(k, n, iterations=500)
    found = vote_ceiling.ceilings(npmle["grid"], npmle["weights"], n)
    assert found["vote_agreement"] > 0.99 and found["majority_accuracy"] > 0.99


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_both_fits_recover_the_ceiling_of_simulated_votes(a):
    grid, weights = vote_ceiling.beta_distribution(a, a)
    n = np.random.default_rng(0).choice([3, 4, 5], size=50)
    truth = vote_ceiling.ceilings(grid, weights, n)
    k, votes = vote_ceiling.simulate(grid, weights, n, rows=30_000, seed=2)
    beta = vote_ceiling.fit_beta_binomial(k, votes)
    assert beta["a"] == pytest.approx(a, rel=0.1) and beta["b"] == pytest.approx(a, rel=0.1)
    npmle = vote_ceiling.fit_npmle(k, votes)
    for fitted in (vote_ceiling.beta_distribution(beta["a"], beta["b"]), (npmle["grid"], npmle["weights"])):
        found = vote_ceiling.ceilings(*fitted, votes)
        assert found["vote_agreement"] == pytest.approx(truth["vote_agreement"], abs=0.01)
        assert found["majority_accuracy"] == pytest.approx(truth["majority_accuracy"], abs=0.01)
    # the in-sample "ceiling" (siding with the rows' own votes) is above what any model can expect
    assert np.maximum(k, votes - k).sum() / votes.sum() > truth["vote_agreement"] + 0.02
