"""Pairwise preferences into rankings: hand-computed Borda and Copeland scores."""
from __future__ import annotations

import numpy as np
import pytest

from ctxsim.retrieval.ranking import borda, copeland, rank_order, symmetric_preferences


def test_symmetric_preferences_average_both_orders():
    p = np.array([[0.0, 0.9, 0.7], [0.2, 0.0, 0.4], [0.1, 0.8, 0.0]])
    pref = symmetric_preferences(p)
    assert pref[0, 1] == pytest.approx((0.9 + 0.8) / 2) and pref[1, 0] == pytest.approx((0.2 + 0.1) / 2)
    np.testing.assert_allclose(pref + pref.T, 1 - np.eye(3))
    assert np.all(np.diag(pref) == 0)


def test_borda_and_copeland_by_hand():
    pref = np.array([[0.0, 0.8, 0.6], [0.2, 0.0, 0.55], [0.4, 0.45, 0.0]])
    np.testing.assert_allclose(borda(pref), [0.7, 0.375, 0.425])
    np.testing.assert_array_equal(copeland(pref), [2, 0, -2])
    order, score = rank_order(pref, "copeland")
    assert order.tolist() == [0, 1, 2] and score.tolist() == [2, 0, -2]
    order, score = rank_order(pref, "borda")
    assert order.tolist() == [0, 2, 1]  # Borda weighs how strongly: 2 loses narrowly to 1 but loses less to 0


def test_ties_go_to_the_tiebreak_and_unknown_ranking_is_refused():
    pref = np.full((3, 3), 0.5)
    np.fill_diagonal(pref, 0)
    order, _ = rank_order(pref, "borda", tiebreak=np.array([0.1, 0.9, 0.5]))
    assert order.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="unknown ranking"):
        rank_order(pref, "kemeny")
